"""Faces: find and follow the face to dub, crop it, mask it, and paste the result back.

Modules (imported directly, so that ``keysync --help`` stays fast):
- ``backends``: landmark back ends (MediaPipe default, dlib, face-alignment) on the iBUG 68 layout;
- ``ibug68``: the layout and the MediaPipe mesh -> iBUG 68 table;
- ``tracking``: ``track_faces`` (every face, scene cuts) and ``select_target`` (the face to dub);
- ``crops``: ``plan_crops`` and ``CropBox`` (stabilised, eye-levelled square crops and their inverse);
- ``masks``: ``build_mask`` (box, heart, mouth, full, minus occluders) and ``latent_mask``;
- ``paste``: ``paste_back`` with feathering and colour matching;
- ``render``: the decode -> crop -> paste -> encode round trip; ``preview``: annotated frames;
- ``commands``: ``keysync faces``.
See docs/faces-and-media.md.
"""
