"""KDEF (Karolinska Directed Emotional Faces), read by its file-name convention (docs/datasets.md).

`KDEF/AF01/AF01ANS.JPG`: session (A|B), gender (F|M), identity (01–35), expression (AF AN
DI HA NE SA SU), angle (FL HL S HR FR); the extension's case varies. The person is gender +
identity (AF01 and BF01 are the same woman), so subject ids are "F01". Frontal (S) pictures
by default, all angles on request. Misnamed files and black placeholders are skipped and
listed; the 562×762 portraits are cropped to the face.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets.core import EMOTIONS, DatasetNotFoundError, FaceDataset
from datasets.folders import ImageFile, SourceFile, non_images, read_image_files
from datasets.preprocess import LoadOptions

TITLE = "KDEF"
EXPECTED = "KDEF's pictures named like AF01/AF01ANS.JPG (the KDEF folder of KDEF_and_AKDEF)"
GET_IT = "https://kdef.se (free for research, after registration)"
EXPRESSIONS = {"AF": "fear", "AN": "anger", "DI": "disgust", "HA": "happiness",
               "NE": "neutral", "SA": "sadness", "SU": "surprise"}
CLASS_ORDER = EMOTIONS
FRONTAL = "S"

_NAME = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(FL|FR|HL|HR|S)\.jpe?g$",
                   re.IGNORECASE)


def recognise(root: Path, files: list[SourceFile]) -> tuple[int, str]:
    """How many of `files` are KDEF pictures by name, and what they look like.

    The layout check of datasets.READERS: `files` is scan(root)'s.
    """
    pictures = sum(1 for file in files if file.is_image and _NAME.match(file.name))
    return pictures, f"KDEF ({pictures} pictures named like AF01ANS.JPG)"


def read(root: Path, files: list[SourceFile], options: LoadOptions) -> FaceDataset:
    """Reads KDEF from `root`; subjects are person ids like "F01".

    The reader interface of datasets.READERS: `files` is scan(root).
    """
    images, skipped, other_angles = [], [], 0
    for file in files:
        if not file.is_image:
            continue
        match = _NAME.match(file.name)
        if match is None:
            skipped.append({"path": file.path, "reason": "name does not follow KDEF's "
                                                         "pattern (e.g. AF01ANS.JPG)"})
            continue
        _, gender, identity, expression, angle = (g.upper() for g in match.groups())
        if options.kdef_angles == "frontal" and angle != FRONTAL:
            other_angles += 1
            continue
        images.append(ImageFile(file.path, EXPRESSIONS[expression], subject=gender + identity))
    if not images and not other_angles:
        raise DatasetNotFoundError(
            f"no KDEF pictures under {root}: expected {EXPECTED}; get it from {GET_IT}"
        )
    source = {"layout": "KDEF file names", "angles": options.kdef_angles,
              "other_angles_left_out": other_angles,
              "ignored_non_image_files": non_images(files)}
    return read_image_files("kdef", root, images, CLASS_ORDER, options, crop_faces=True,
                            skipped=skipped, source=source)
