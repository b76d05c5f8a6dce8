"""Files, images and media: the plumbing every other part uses.

- ``images``: decoding any image file to RGB (EXIF orientation, size limits), tensors in and out,
  padding, luma/chroma, long-side resizing;
- ``files``: atomic writes, output-path checks (never over an input), image encoding options;
- ``paths``: where the package's own files are (paintings, sample photos, the Hydra configs);
- ``video``: reading and writing video frames (a bundled ffmpeg);
- ``sheets``: labelled contact sheets.

May import: ``stylenet.errors``, and ``stylenet.configs`` (the config files, to find them).
"""
