"""Training: ONE loop (``loop.py``, on Hugging Face Accelerate) and one file per stage of the paper.

    loop.py        the loop: device, DDP, mixed precision, gradient accumulation, logs, eval cadence,
                   checkpoint + prune + resume, final save; the Stage protocol and the CLI stage registry
    runstate.py    what a run keeps: TrainConfig (shared loop settings), seeds, log.csv, resumable checkpoints
    losses.py      ExpNet and PoseVAE losses, supp. Eq. 3-13
    expnet.py      ExpNet distillation (Eq. 2-10) with the Table 3 ablation switches
    lipreader.py   the lip-reading stand-in for L_read (trained here; user weights load the same way)
    posevae.py     PoseVAE (Eq. 11-13) with the Table 4 ablation switches
    syncnet.py     the trained-here SyncNet for LSE-C / LSE-D
    regressor.py   the coefficient regressor (face_3drecon) on fitted portraits / video frames
    facevid2vid.py face-vid2vid self-supervised (keypoint detector, generator, head-pose estimator);
                   facevid2vid_nets.py its networks and checkpoint folders
    mapping.py     MappingNet (Eq. 14) on a frozen face-vid2vid; facerender_losses.py their losses
    ablations.py   Tables 3 and 4 at a small preset (+ the notebook widget)

Training windows live in ``sadtalker_lib.data.windows``. Every stage writes its checkpoints in the official layout
(``load_official`` reads them) with the optimizer and RNG state beside the weights; a run stopped mid-way and
resumed ends with the same weights. ``sadtalker-lab train STAGE ...`` runs a stage from the command line, also
under ``torchrun`` / ``accelerate launch``.
"""
from ..data.windows import ExpWindows, PoseWindows, exp_windows_from_dataset, pose_windows_from_dataset, split_by_clip
from .expnet import EXPNET_ABLATIONS, ExpNetTrainConfig, evaluate_expnet, train_expnet
from .loop import Stage, TrainConfig, TrainHistory, run, seed_everything
from .posevae import (
    POSEVAE_ABLATIONS,
    PoseVAETrainConfig,
    evaluate_posevae,
    train_posevae,
)
from .posevae_eval import evaluate_posevae_clips

__all__ = [
    "TrainConfig", "TrainHistory", "Stage", "run", "seed_everything",
    "ExpNetTrainConfig", "EXPNET_ABLATIONS", "train_expnet", "evaluate_expnet",
    "PoseVAETrainConfig", "POSEVAE_ABLATIONS", "train_posevae", "evaluate_posevae", "evaluate_posevae_clips",
    "ExpWindows", "PoseWindows", "exp_windows_from_dataset", "pose_windows_from_dataset", "split_by_clip",
]
