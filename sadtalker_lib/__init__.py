"""SadTalker Lab: a readable reimplementation of SadTalker (CVPR 2023) for research and teaching.

Subpackages / modules (see README.md for the data flow):
    audio, blink, audio2coeff     speech -> mel windows -> expression / pose coefficients
    face                          detection, 5-point alignment, crop modes, paste-back
    morphable                     the 3D face model (BFM loader, default stand-in), fitting, pictures
    models                        pure nn.Modules: ExpNet, PoseVAE, MappingNet, face-vid2vid, regressor
    official, checkpoints         official checkpoint layouts, key maps and quirks
    semantics, motion, animate    coefficient windows, keypoint transformation, the render loop
    pipeline, video, cli          TalkingHeadPipeline, mp4 I/O, the `sadtalker-lab` command
    data, train                   corpora and training loops
"""
__version__ = "0.1.0"
