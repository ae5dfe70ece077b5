"""PoseVAE (paper Sec. 3.2, Fig. 4; supp. Fig. B11 e): a conditional VAE over 32-frame head-motion residuals.

The head pose rho = [r (3 angles), t (3)] is generated as a residual of the first frame's pose rho_0:
Delta rho_{1..t} = rho_{1..t} - rho_0. Conditions: rho_0, the style identity Z_style (one of 46 training
identities, a learned 64-d bias added to the latent) and the audio a_{1..t} (Wav2Lip audio encoder,
512 -> 6 per frame). Encoder and decoder are small MLPs around a 2-D residual U-Net that runs over the
[time 32 x pose 6] motion "image". At test time only the decoder runs:

    z ~ N(0, I) (64);  h = [rho_0 | z + bias[style] | W_a a_{1..32}]  (6 + 64 + 32*6 = 262)
    Delta rho = pose_linear( ResUnet( sigmoid(MLP(h)).reshape(32, 6) ) )                 [B, 32, 6]

A 1-D PatchGAN-style sequence discriminator (``discriminator``) is part of the official checkpoint and is
used only for training (L_GAN).

Official sources: ``src/audio2pose_models/{audio2pose,cvae,res_unet,networks,audio_encoder,discriminator}.py``
and ``src/config/auido2pose.yaml``. Our keys map to the official ones with ``KEY_MAPS["audio2pose"]``
(``netG.encoder`` -> ``encoder``, ``netG.decoder`` -> ``decoder``, ``netD_motion`` -> ``discriminator``,
``audio_encoder.audio_encoder`` -> ``audio_encoder``); names inside the blocks are the official ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .expnet import AudioEncoder

__all__ = [
    "PoseVAEConfig",
    "ResidualConv",
    "Upsample",
    "ResUnet",
    "PoseEncoder",
    "PoseDecoder",
    "ConvNormRelu1d",
    "PoseSequenceDiscriminator",
    "PoseVAE",
]


@dataclass
class PoseVAEConfig:
    """PoseVAE sizes (official ``auido2pose.yaml``)."""

    seq_len: int = 32  # MODEL.CVAE.SEQ_LEN: frames per generated chunk
    latent_size: int = 64  # MODEL.CVAE.LATENT_SIZE
    num_classes: int = 46  # DATASET.NUM_CLASSES: pose styles (training identities)
    pose_dim: int = 6  # rho = 3 angles + 3 translations
    audio_emb_in: int = 512  # MODEL.CVAE.AUDIO_EMB_IN_SIZE (audio encoder output)
    audio_emb_out: int = 6  # MODEL.CVAE.AUDIO_EMB_OUT_SIZE (per frame, after linear_audio)
    encoder_hidden: tuple[int, ...] = (128,)  # ENCODER_LAYER_SIZES [192, 128]: 192 is widened to the input size
    decoder_hidden: tuple[int, ...] = (128, 192)  # DECODER_LAYER_SIZES; the last must be seq_len * pose_dim
    unet_filters: tuple[int, int, int, int] = (32, 64, 128, 256)  # ResUnet default filters
    disc_channels: tuple[int, int, int] = (256, 512, 1024)  # PoseSequenceDiscriminator widths
    disc_leaky_relu: bool = False  # MODEL.DISCRIMINATOR.LEAKY_RELU
    # OFFICIAL QUIRK: src/audio2pose_models/cvae.py ENCODER.forward computes ``logvar = self.linear_means(x_out)``;
    # ``linear_logvar`` is built and saved in the checkpoint but never used. Only training (the KL term) sees it.
    logvar_from_means_layer: bool = True

    @property
    def decoder_in(self) -> int:
        return self.pose_dim + self.latent_size + self.seq_len * self.audio_emb_out  # 262

    @property
    def encoder_in(self) -> int:
        # 6 + 32 * 6 + 32 * 6 + 64 = 454
        return self.pose_dim + self.seq_len * self.pose_dim + self.seq_len * self.audio_emb_out + self.latent_size


# ---------------------------------------------------------------------------------------------
# Residual U-Net over the [time, pose] plane (official res_unet.py / networks.py, after ResUNet)
# ---------------------------------------------------------------------------------------------
class ResidualConv(nn.Module):
    """Pre-activation residual block: (BN-ReLU-Conv3x3-BN-ReLU-Conv3x3) + (Conv3x3-BN) skip, no final act.

    [B, C_in, H, W] -> [B, C_out, H / s_h, W / s_w].
    """

    def __init__(self, c_in: int, c_out: int, stride: int | tuple[int, int], padding: int = 1):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=padding),
            nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, kernel_size=3, padding=1),
        )
        self.conv_skip = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1), nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x) + self.conv_skip(x)


class Upsample(nn.Module):
    """Transposed conv that doubles time only: [B, C, H, W] -> [B, C_out, 2H, W] (kernel = stride = (2, 1))."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(c_in, c_out, kernel_size=(2, 1), stride=(2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


class ResUnet(nn.Module):
    """[B, 1, T, 6] -> [B, 1, T, 6] in (0, 1) (sigmoid). Three time-halving stages, a bridge, three up stages.

    T must be divisible by 8 (32 -> 16 -> 8 -> 4 -> 8 -> 16 -> 32); the pose axis keeps its width.
    """

    def __init__(self, filters: tuple[int, int, int, int] = (32, 64, 128, 256), channels: int = 1):
        super().__init__()
        f0, f1, f2, f3 = filters
        down = (2, 1)
        self.input_layer = nn.Sequential(
            nn.Conv2d(channels, f0, kernel_size=3, padding=1), nn.BatchNorm2d(f0), nn.ReLU(),
            nn.Conv2d(f0, f0, kernel_size=3, padding=1),
        )
        self.input_skip = nn.Sequential(nn.Conv2d(channels, f0, kernel_size=3, padding=1))
        self.residual_conv_1 = ResidualConv(f0, f1, stride=down)
        self.residual_conv_2 = ResidualConv(f1, f2, stride=down)
        self.bridge = ResidualConv(f2, f3, stride=down)
        self.upsample_1 = Upsample(f3, f3)
        self.up_residual_conv1 = ResidualConv(f3 + f2, f2, stride=1)
        self.upsample_2 = Upsample(f2, f2)
        self.up_residual_conv2 = ResidualConv(f2 + f1, f1, stride=1)
        self.upsample_3 = Upsample(f1, f1)
        self.up_residual_conv3 = ResidualConv(f1 + f0, f0, stride=1)
        self.output_layer = nn.Sequential(nn.Conv2d(f0, channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.input_layer(x) + self.input_skip(x)  # [B, 32, T, 6]
        x2 = self.residual_conv_1(x1)  # [B, 64, T/2, 6]
        x3 = self.residual_conv_2(x2)  # [B, 128, T/4, 6]
        x4 = self.bridge(x3)  # [B, 256, T/8, 6]
        x6 = self.up_residual_conv1(torch.cat([self.upsample_1(x4), x3], dim=1))  # [B, 128, T/4, 6]
        x8 = self.up_residual_conv2(torch.cat([self.upsample_2(x6), x2], dim=1))  # [B, 64, T/2, 6]
        x10 = self.up_residual_conv3(torch.cat([self.upsample_3(x8), x1], dim=1))  # [B, 32, T, 6]
        return self.output_layer(x10)  # [B, 1, T, 6]


def _mlp(sizes: list[int], final: nn.Module | None) -> nn.Sequential:
    """Linear layers named L0, L1, ... with ReLUs A0, ... between them and ``final`` (named 'sigmoid') last."""
    mlp = nn.Sequential()
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mlp.add_module(f"L{i}", nn.Linear(a, b))
        last = i == len(sizes) - 2
        if not last or final is None:
            mlp.add_module(f"A{i}", nn.ReLU())
        else:
            mlp.add_module("sigmoid", final)
    return mlp


# ---------------------------------------------------------------------------------------------
# CVAE encoder (training only) and decoder
# ---------------------------------------------------------------------------------------------
class PoseEncoder(nn.Module):
    """q(z | Delta rho, rho_0, audio, style): motion [B, S, 6], rho_0 [B, 6], audio [B, S, 512], style [B]
    -> (mu, logvar) [B, 64] each."""

    def __init__(self, c: PoseVAEConfig):
        super().__init__()
        self.config = c
        self.resunet = ResUnet(c.unet_filters)
        self.MLP = _mlp([c.encoder_in, *c.encoder_hidden], final=None)  # 454 -> 128, ReLU
        self.linear_means = nn.Linear(c.encoder_hidden[-1], c.latent_size)
        self.linear_logvar = nn.Linear(c.encoder_hidden[-1], c.latent_size)
        self.linear_audio = nn.Linear(c.audio_emb_in, c.audio_emb_out)
        self.classbias = nn.Parameter(torch.randn(c.num_classes, c.latent_size))  # Z_style embedding

    def forward(self, motion: torch.Tensor, ref_pose: torch.Tensor, audio_emb: torch.Tensor,
                style: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = motion.shape[0]
        pose_emb = self.resunet(motion.unsqueeze(1)).reshape(b, -1)  # [B, S*6]
        audio = self.linear_audio(audio_emb).reshape(b, -1)  # [B, S*6]
        h = self.MLP(torch.cat([ref_pose, pose_emb, audio, self.classbias[style]], dim=-1))  # [B, 128]
        mu = self.linear_means(h)
        logvar = self.linear_means(h) if self.config.logvar_from_means_layer else self.linear_logvar(h)
        return mu, logvar


class PoseDecoder(nn.Module):
    """p(Delta rho | z, rho_0, audio, style): z [B, 64], rho_0 [B, 6], audio [B, S, 512], style [B] long
    -> Delta rho [B, S, 6]."""

    def __init__(self, c: PoseVAEConfig):
        super().__init__()
        assert c.decoder_hidden[-1] == c.seq_len * c.pose_dim, "the decoder MLP must output seq_len * pose_dim"
        self.config = c
        self.resunet = ResUnet(c.unet_filters)
        self.MLP = _mlp([c.decoder_in, *c.decoder_hidden], final=nn.Sigmoid())  # 262 -> 128 -> 192, sigmoid
        self.pose_linear = nn.Linear(c.pose_dim, c.pose_dim)
        self.linear_audio = nn.Linear(c.audio_emb_in, c.audio_emb_out)
        self.classbias = nn.Parameter(torch.randn(c.num_classes, c.latent_size))  # Z_style embedding

    def forward(self, z: torch.Tensor, ref_pose: torch.Tensor, audio_emb: torch.Tensor,
                style: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        audio = self.linear_audio(audio_emb).reshape(b, -1)  # [B, S*6]
        h = torch.cat([ref_pose, z + self.classbias[style], audio], dim=-1)  # [B, 262]
        x = self.MLP(h).reshape(b, self.config.seq_len, -1)  # [B, S, 6]
        return self.pose_linear(self.resunet(x.unsqueeze(1)).squeeze(1))  # [B, S, 6]


# ---------------------------------------------------------------------------------------------
# Sequence discriminator (training only; official discriminator.py PoseSequenceDiscriminator)
# ---------------------------------------------------------------------------------------------
class ConvNormRelu1d(nn.Module):
    """Conv1d (no bias) -> BatchNorm1d -> ReLU (LeakyReLU 0.2 when ``leaky``). Downsampling: k4 s2 p1."""

    def __init__(self, c_in: int, c_out: int, downsample: bool = False, leaky: bool = False):
        super().__init__()
        k, s, p = (4, 2, 1) if downsample else (3, 1, 1)
        self.conv = nn.Conv1d(c_in, c_out, k, s, p, bias=False)
        self.norm = nn.BatchNorm1d(c_out)
        self.act = nn.LeakyReLU(0.2) if leaky else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PoseSequenceDiscriminator(nn.Module):
    """Real/fake score per temporal patch: pose sequence [B, T, 6] -> [B, T / 4]."""

    def __init__(self, c: PoseVAEConfig):
        super().__init__()
        c1, c2, c3 = c.disc_channels
        self.seq = nn.Sequential(
            ConvNormRelu1d(c.pose_dim, c1, downsample=True, leaky=c.disc_leaky_relu),
            ConvNormRelu1d(c1, c2, downsample=True, leaky=c.disc_leaky_relu),
            ConvNormRelu1d(c2, c3, leaky=c.disc_leaky_relu),
            nn.Conv1d(c3, 1, kernel_size=3, stride=1, padding=1, bias=True),
        )

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        x = poses.reshape(poses.shape[0], poses.shape[1], -1).transpose(1, 2)  # [B, 6, T]
        return self.seq(x).squeeze(1)  # [B, T/4]


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class PoseVAE(nn.Module):
    """Audio encoder + CVAE (encoder, decoder) + sequence discriminator.

    ``forward`` is the test path for one chunk: mel [B, S, 1, 80, 16], rho_0 [B, 6], style [B] (long),
    z [B, 64] -> Delta rho [B, S, 6] with S = ``config.seq_len``. The chunking over a whole clip lives in
    ``sadtalker_lib/audio2coeff.py``.
    """

    def __init__(self, config: PoseVAEConfig | None = None):
        super().__init__()
        self.config = config = config or PoseVAEConfig()
        self.audio_encoder = AudioEncoder()  # frozen Wav2Lip encoder in the official training
        self.encoder = PoseEncoder(config)
        self.decoder = PoseDecoder(config)
        self.discriminator = PoseSequenceDiscriminator(config)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel windows [B, S, 1, 80, 16] -> audio embeddings [B, S, 512].

        Frames are flattened batch-major. (The official AudioEncoder concatenates time-major and then
        reshapes batch-major, which mixes clips when B > 1; at B = 1, the official inference, both agree.)
        """
        b, s = mel.shape[:2]
        return self.audio_encoder(mel.reshape(b * s, *mel.shape[2:])).reshape(b, s, -1)

    def forward(self, mel: torch.Tensor, ref_pose: torch.Tensor, style: torch.Tensor,
                z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, ref_pose, self.encode_audio(mel), style)
