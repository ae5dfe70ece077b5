"""The paper's arrows (Fig. 2) after the coefficients, each a module a notebook can call on its own.

    windows.py    generated coefficients [T, 70] -> MappingNet windows [B, C, 27], streamed (``get_facerender_data``)
    keypoints.py  MappingNet bins / t / exp -> driven keypoints R x_c + t + delta (``make_animation.py``)
    render.py     the one render loop: source encoded once, B consecutive frames per generator call

The audio side (``audio``, ``blink``, ``audio2coeff``) stays at the package's top level; the networks are
reached through ``sadtalker_lib.wrapper.Models``.
"""
