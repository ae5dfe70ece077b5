"""Training loops for every stage of the paper, small enough to learn visibly on a CPU (``Config.cpu()``).

    common.py             the paper's hyper-parameters, seeding, CSV (+ TensorBoard) logs, checkpoint + resume
    losses.py             ExpNet and PoseVAE losses, supp. Eq. 3-13
    windows.py            training windows as tensors (from a corpus, or synthetic for tests)
    lipreader.py          the lip-reading stand-in for L_read (trained here; user weights load the same way)
    expnet_trainer.py     ExpNet distillation (Eq. 2-10) with the Table 3 ablation switches
    posevae_trainer.py    PoseVAE (Eq. 11-13) with the Table 4 ablation switches
    facerender_trainer.py face-vid2vid and MappingNet (Eq. 14); regressor_trainer.py the coefficient regressor

Every loop writes its checkpoints in the official layout (``checkpoints.load_official`` reads them) with the
optimizer and RNG state beside the weights; a run stopped mid-way and resumed ends with the same weights.
"""
from .common import TrainConfig, TrainHistory, seed_everything
from .expnet_trainer import EXPNET_ABLATIONS, ExpNetTrainConfig, evaluate_expnet, train_expnet
from .posevae_trainer import (
    POSEVAE_ABLATIONS,
    PoseVAETrainConfig,
    evaluate_posevae,
    evaluate_posevae_clips,
    train_posevae,
)
from .windows import ExpWindows, PoseWindows, exp_windows_from_dataset, pose_windows_from_dataset, split_by_clip

__all__ = [
    "TrainConfig", "TrainHistory", "seed_everything",
    "ExpNetTrainConfig", "EXPNET_ABLATIONS", "train_expnet", "evaluate_expnet",
    "PoseVAETrainConfig", "POSEVAE_ABLATIONS", "train_posevae", "evaluate_posevae", "evaluate_posevae_clips",
    "ExpWindows", "PoseWindows", "exp_windows_from_dataset", "pose_windows_from_dataset", "split_by_clip",
]
