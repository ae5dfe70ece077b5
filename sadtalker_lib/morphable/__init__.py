"""The 3D face model (paper Sec. 3.1): the official BFM layout, an offline stand-in, fitting and pictures.

    model.py    MorphableModel (shape, texture, SH light, rotation, official camera, 68 landmarks), layouts
    bfm.py      load_bfm: BFM_model_front.mat (official layout) -> MorphableModel
    default.py  DefaultMorphableModel: a stand-in built by this project's code (no download, not the BFM)
    fit.py      fit pose / identity / expression to 68 landmarks of an image or a video
    render.py   differentiable landmark projection, eye aspect ratio (supp. Eq. 4-6), CPU rasteriser, pictures
"""
from .model import MorphableModel, PerspectiveCamera, coeffs_70, coeffs_73, coeffs_257, split_coeff

__all__ = ["MorphableModel", "PerspectiveCamera", "split_coeff", "coeffs_257", "coeffs_70", "coeffs_73"]
