"""SadTalker Lab: a readable reimplementation of SadTalker (CVPR 2023) for research and teaching.

Subpackages / modules (see README.md for the data flow):
    audio, blink, audio2coeff     speech -> mel windows -> expression / pose coefficients
    face                          detection, 5-point alignment, crop modes, paste-back
    morphable                     the 3D face model (BFM loader, default stand-in), fitting, pictures
    models                        pure nn.Modules: ExpNet, PoseVAE, MappingNet, face-vid2vid, regressor
    coeffs                        the 257 / 73 / 70 coefficient layouts (once)
    official                      the official release: file layouts, key maps, checkpoint I/O, network registry
    steps                         coefficient windows, keypoint transformation, the ONE streaming render loop
    wrapper, pipeline             Models (device, precision, weights; paper-level operations), TalkingHeadPipeline
    video, cli                    the one ffmpeg reader and mp4 writer, the `sadtalker-lab` command
    data, train                   corpora and datasets; the ONE training loop (Accelerate) and one file per stage
    metrics                       the paper's evaluation suite (Table 1)
    paths, notebook               cache / ../shared discovery; helpers the notebooks import
"""
__version__ = "0.1.0"
