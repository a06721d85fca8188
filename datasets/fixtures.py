"""The synthetic set written out in each real dataset's layout, with its ground truth.

Every writer draws synthetic faces (datasets.synthetic), saves them the way users have the
real dataset, traps included (clutter files, odd names, duplicates, unlabelled or
misnamed or blank files), and returns a Truth: what a correct loader must recover. Tests
load the folder and compare; the benchmark writes a full-size FER2013 CSV the same way.

Full-frame portraits (CK+ 640×490, KDEF 562×762) put the face exactly in the centred
square that preprocess.centre_square returns, so the crop fallback recovers it; a Haar
cascade (where OpenCV has one) may or may not find a drawn face.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from datasets import ckplus, fer2013, kdef, natural_faces
from datasets.core import EMOTIONS
from datasets.preprocess import centre_square
from datasets.synthetic import generate

FACE_PX = 48
FER2013_USAGE_COUNTS = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
CK_EMOTIONS = tuple(e for e in EMOTIONS if e != "neutral")
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")
_PARTS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


@dataclass
class Truth:
    """What a loader must recover from a fixture folder.

    Attributes:
        root: the folder written (pass it as the data dir).
        class_names: the dataset's classes in label order.
        labels: id → canonical emotion, for every image the loader must keep.
        subjects: id → subject id, or None where the layout has none.
        parts: id → official part ("train"/"val"/"test"), or None.
        skipped: id → a fragment of the reason, for every file the loader must list.
        duplicates: kept images that repeat an earlier kept image's pixels.
        dropped: ids an official split leaves out (duplicate copies straddling it).
        faces: id → the (48, 48) face drawn, for pixel checks.
        angles: KDEF only: id → angle code, for every KDEF picture written.
    """

    root: Path
    class_names: list[str]
    labels: dict[str, str] = field(default_factory=dict)
    subjects: dict[str, str] | None = None
    parts: dict[str, str] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0
    dropped: set[str] = field(default_factory=set)
    faces: dict[str, np.ndarray] = field(default_factory=dict)
    angles: dict[str, str] = field(default_factory=dict)

    def only(self, ids) -> Truth:
        """The same truth restricted to the images `ids`."""
        keep = set(ids)

        def pick(mapping):
            return None if mapping is None else {k: v for k, v in mapping.items() if k in keep}

        return replace(self, labels=pick(self.labels), subjects=pick(self.subjects),
                       parts=pick(self.parts), faces=pick(self.faces),
                       class_names=[c for c in self.class_names if c in
                                    {self.labels[k] for k in keep}])


def _draw(subjects: int, per_expression: int, emotions, seed: int):
    """{(subject index, emotion): [faces]}, all (48, 48) uint8."""
    data = generate(num_subjects=subjects, per_expression=per_expression, seed=seed,
                    image_size=FACE_PX, emotions=tuple(emotions))
    faces: dict[tuple[int, str], list[np.ndarray]] = {}
    for i, image in enumerate(data.images[..., 0]):
        subject = int(data.subjects[i][1:])
        faces.setdefault((subject, data.class_names[data.labels[i]]), []).append(image)
    return faces


def _write(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Saves `image` by its suffix (any case), through bytes so odd names are fine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if path.suffix.lower() == ".jpeg" else path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix == ".jpg" else []
    ok, data = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"could not encode {path.name}")
    data.tofile(path)


def _clutter(*folders: Path) -> None:
    """Operating-system files every real copy seems to carry."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
        (folder / "Thumbs.db").write_bytes(bytes(32))


@functools.lru_cache(maxsize=4)
def _backdrop(width: int, height: int) -> np.ndarray:
    """A studio-like grey gradient."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (60 + 50 * xx / width + 30 * yy / height).astype(np.uint8)


def _portrait(face: np.ndarray, width: int, height: int, rng, colour: bool) -> np.ndarray:
    """A full-frame picture: background, with `face` filling the centred crop square."""
    # Per-picture noise: two pictures of one face are never exact duplicates.
    canvas = _backdrop(width, height) + rng.integers(0, 8, (height, width), dtype=np.uint8)
    x, y, side = centre_square(height, width)
    canvas[y:y + side, x:x + side] = cv2.resize(face, (side, side),
                                                interpolation=cv2.INTER_CUBIC)
    return np.repeat(canvas[..., None], 3, axis=2) if colour else canvas


def write_ckplus48(root: Path, num_subjects: int = 6, seed: int = 0, traps: bool = True) -> Truth:
    """Writes Kaggle's CK+48 layout: `CK+48/<class>/S100_003_00000017.png`.

    Args:
        root: folder to write into (created).
        num_subjects: subjects; each gets one 3-frame sequence per emotion.
        seed: drawing seed.
        traps: add .DS_Store/Thumbs.db files and an image without a subject id.

    Returns:
        The Truth; ids are paths relative to `root`.
    """
    folder_of = {emotion: name for name, emotion in ckplus.CK48_FOLDERS.items()}
    faces = _draw(num_subjects, 3, CK_EMOTIONS, seed)
    truth = Truth(Path(root), list(CK_EMOTIONS), subjects={})
    for (s, emotion), frames in faces.items():
        sequence = CK_EMOTIONS.index(emotion) + 1
        for k, face in enumerate(frames):
            path = f"CK+48/{folder_of[emotion]}/S{100 + s:03d}_{sequence:03d}_{k + 15:08d}.png"
            _write(truth.root / path, face)
            truth.labels[path], truth.subjects[path] = emotion, f"S{100 + s:03d}"
            truth.faces[path] = face
    if traps:
        _clutter(truth.root / "CK+48", truth.root / "CK+48" / "anger")
        odd = "CK+48/anger/face.png"
        _write(truth.root / odd, faces[0, "anger"][0])
        truth.skipped[odd] = "subject id"
    return truth


def write_ckplus_original(
    root: Path,
    num_subjects: int = 4,
    seed: int = 0,
    nested: bool = False,
    traps: bool = True,
) -> Truth:
    """Writes the original CK+ trees: `cohn-kanade-images/` frames, `Emotion/` labels.

    Each subject has 3 labelled sequences of 4 frames (neutral onset, then 3 frames of the
    expression, the last one labelled) and 2 unlabelled ones (one with an empty Emotion
    folder, one with none). Frames are 640×490 (640×480 for every third subject), colour
    for odd subjects.

    Args:
        root: folder to write into (created).
        num_subjects: subjects.
        seed: drawing seed.
        nested: use another copy's nesting, `extended-cohn-kanade-images/cohn-kanade-images/`
            and `Emotion_labels/Emotion/`.
        traps: add .DS_Store/Thumbs.db files.

    Returns:
        The Truth: the last 3 frames of each labelled sequence.
    """
    root = Path(root)
    images = root / ("extended-cohn-kanade-images/cohn-kanade-images" if nested
                     else "cohn-kanade-images")
    labels = root / ("Emotion_labels/Emotion" if nested else "Emotion")
    faces = _draw(num_subjects, 3, ("neutral", *CK_EMOTIONS), seed)
    rng = np.random.default_rng(seed)
    truth = Truth(root, [], subjects={})
    for s in range(num_subjects):
        subject = f"S{5 + s:03d}"
        width, height = 640, 480 if s % 3 == 2 else 490
        for k in range(5):
            emotion = CK_EMOTIONS[(s + 2 * k) % len(CK_EMOTIONS)]
            sequence = f"{k + 1:03d}"
            frames = [faces[s, "neutral"][0], *faces[s, emotion]]
            for number, face in enumerate(frames, 1):
                name = f"{subject}_{sequence}_{number:08d}.png"
                _write(images / subject / sequence / name,
                       _portrait(face, width, height, rng, colour=s % 2 == 1))
                path = (images / subject / sequence / name).relative_to(root).as_posix()
                if k < 3 and number > 1:
                    truth.labels[path], truth.subjects[path] = emotion, subject
                    truth.faces[path] = face
            if k < 3:
                code = EMOTIONS.index(emotion)
                label = labels / subject / sequence / f"{name[:-4]}_emotion.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(f"   {code:.7e}\n")
            elif k == 3:
                (labels / subject / sequence).mkdir(parents=True, exist_ok=True)
        if traps:
            _clutter(images / subject / "001")
    truth.class_names = [e for e in EMOTIONS if e in set(truth.labels.values())]
    return truth


def _fer_faces(count: int, seed: int, max_distinct: int | None):
    """`count` (face, FER2013 label id) pairs, drawn (and re-noised past `max_distinct`)."""
    distinct = count if max_distinct is None else min(count, max_distinct)
    per_subject = len(fer2013.CLASS_ORDER)
    faces = _draw(math.ceil(distinct / per_subject), 1, fer2013.CLASS_ORDER, seed)
    pool = [(faces[key][0], fer2013.CLASS_ORDER.index(key[1])) for key in sorted(faces)]
    pool = pool[:distinct]
    rng = np.random.default_rng(seed)
    rng.shuffle(pool)
    out = list(pool)
    while len(out) < count:  # ±2 grey-level noise: new rows, never exact duplicates
        face, label = pool[len(out) % distinct]
        noise = rng.integers(-2, 3, face.shape)
        out.append((np.clip(face + noise, 0, 255).astype(np.uint8), label))
    return out


def write_fer2013_csv(
    root: Path,
    usage_counts: dict[str, int] | None = None,
    seed: int = 0,
    columns: tuple[str, str, str] = ("emotion", "pixels", "Usage"),
    file_name: str = "fer2013.csv",
    traps: bool = True,
    max_distinct_faces: int | None = None,
) -> Truth:
    """Writes the FER2013 CSV (emotion, pixels, Usage), rows grouped by Usage as in the real file.

    Args:
        root: folder to write into (created).
        usage_counts: rows per Usage; default 42 Training, 14 PublicTest, 14 PrivateTest.
            FER2013_USAGE_COUNTS gives the real file's 35,887 rows.
        seed: drawing seed.
        columns: the header's column names in order; padded names (" pixels") are a trap
            some copies carry, and icml_face_data.csv orders them emotion, Usage, pixels.
        file_name: the CSV's name.
        traps: make row 2 a copy of the last PrivateTest row (the official split must drop
            it), row 3 a copy of row 1, and row 4 blank.
        max_distinct_faces: draw at most this many faces and vary them with noise for the
            other rows (fast full-size fixtures).

    Returns:
        The Truth; ids are `<file_name>:<row>`, rows counted from 1 after the header.
    """
    counts = usage_counts or {"Training": 42, "PublicTest": 14, "PrivateTest": 14}
    usages = [usage for usage, n in counts.items() for _ in range(n)]
    rows = _fer_faces(len(usages), seed, max_distinct_faces)
    if traps:
        rows[1], rows[2] = rows[-1], rows[0]
        rows[3] = (np.zeros_like(rows[3][0]), rows[3][1])
    truth = Truth(Path(root), [], parts={})
    names = [c.strip() for c in columns]
    text = np.array([str(v) for v in range(256)], dtype=object)
    lines = [",".join(columns)]
    for number, ((face, label), usage) in enumerate(zip(rows, usages, strict=True), 1):
        fields = {"emotion": str(label), "pixels": " ".join(text[face.ravel()]),
                  "Usage": usage}
        lines.append(",".join(fields[name] for name in names))
        row_id = f"{file_name}:{number}"
        if traps and number == 4:
            truth.skipped[row_id] = "blank"
            continue
        truth.labels[row_id] = fer2013.CLASS_ORDER[label]
        truth.parts[row_id] = _PARTS[usage]
        truth.faces[row_id] = face
    if traps:
        truth.duplicates, truth.dropped = 2, {f"{file_name}:2"}
    truth.root.mkdir(parents=True, exist_ok=True)
    (truth.root / file_name).write_text("\n".join(lines) + "\n")
    truth.class_names = [e for e in fer2013.CLASS_ORDER if e in set(truth.labels.values())]
    return truth


def write_fer2013_folders(
    root: Path, usage_counts: dict[str, int] | None = None, seed: int = 0, traps: bool = True
) -> Truth:
    """Writes Kaggle's FER2013 folders: `train/<class>/Training_<id>.jpg`, `test/…`.

    Args:
        root: folder to write into (created).
        usage_counts: images per Usage (default 42/14/14); test/ mixes PublicTest and
            PrivateTest, as in the Kaggle copy.
        seed: drawing seed.
        traps: add clutter, a stray CSV, a corrupt JPG, and a training copy of a test image.

    Returns:
        The Truth; ids are paths relative to `root`.
    """
    counts = usage_counts or {"Training": 42, "PublicTest": 14, "PrivateTest": 14}
    usages = [usage for usage, n in counts.items() for _ in range(n)]
    rows = _fer_faces(len(usages), seed, None)
    folder_of = {emotion: name for name, emotion in fer2013.FOLDERS.items()}
    truth = Truth(Path(root), [], parts={})
    for number, ((face, label), usage) in enumerate(zip(rows, usages, strict=True)):
        emotion = fer2013.CLASS_ORDER[label]
        top = "train" if usage == "Training" else "test"
        path = f"{top}/{folder_of[emotion]}/{usage}_{1000 + 7 * number}.jpg"
        _write(truth.root / path, face)
        truth.labels[path], truth.parts[path], truth.faces[path] = emotion, _PARTS[usage], face
    if traps:
        _clutter(truth.root, truth.root / "train" / "happy")
        (truth.root / "test" / "notes.csv").write_text("id,comment\n1,stray\n")
        corrupt = "train/happy/Training_99999999.jpg"
        (truth.root / corrupt).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
        truth.skipped[corrupt] = "decodable"
        face, label = rows[-1]
        copy = f"train/{folder_of[fer2013.CLASS_ORDER[label]]}/Training_5.jpg"
        _write(truth.root / copy, face)
        truth.labels[copy], truth.parts[copy] = fer2013.CLASS_ORDER[label], "train"
        truth.faces[copy], truth.duplicates, truth.dropped = face, 1, {copy}
    truth.class_names = [e for e in fer2013.CLASS_ORDER if e in set(truth.labels.values())]
    return truth


def write_kdef(
    root: Path,
    num_people: int = 4,
    seed: int = 0,
    angles: tuple[str, ...] = KDEF_ANGLES,
    traps: bool = True,
) -> Truth:
    """Writes KDEF: `KDEF/AF01/AF01ANS.JPG`, two sessions, seven expressions, five angles.

    People alternate female/male (F01, M01, F02, …); pictures are 562×762 colour JPGs.

    Args:
        root: folder to write into (created).
        num_people: people (each photographed in sessions A and B); ≥ 2 for the traps.
        seed: drawing seed.
        angles: the angle codes to write (fewer make a faster fixture); "S" for the traps.
        traps: vary the extension's case, add clutter, a misnamed picture, and a black
            placeholder in place of one frontal picture.

    Returns:
        The Truth for every angle; `angles` tells which, `only()` narrows it.
    """
    expressions = {emotion: code for code, emotion in kdef.EXPRESSIONS.items()}
    faces = _draw(num_people, 2, tuple(expressions), seed)
    rng = np.random.default_rng(seed)
    truth = Truth(Path(root), [e for e in EMOTIONS if e in expressions], subjects={})
    # Traps: a mixed-case extension, a name without its angle, a black placeholder.
    odd_names = {"AF01HAS.JPG": "AF01HAS.Jpg", "AM01NES.JPG": "AM01NE.JPG"} if traps else {}
    black = "BF01DIS.jpg" if traps else None
    for (p, emotion), pictures in faces.items():
        person = "FM"[p % 2] + f"{p // 2 + 1:02d}"
        for session, face in zip("AB", pictures, strict=True):
            for angle in angles:
                name = f"{session}{person}{expressions[emotion]}{angle}"
                name += ".jpg" if session == "B" else ".JPG"
                path = f"KDEF/{session}{person}/{odd_names.get(name, name)}"
                if name == black:
                    _write(truth.root / path, np.zeros((762, 562, 3), np.uint8))
                    truth.skipped[path] = "blank"
                    continue
                _write(truth.root / path, _portrait(face, 562, 762, rng, colour=True))
                if name == "AM01NES.JPG" and traps:
                    truth.skipped[path] = "pattern"
                    continue
                truth.labels[path], truth.subjects[path] = emotion, person
                truth.faces[path], truth.angles[path] = face, angle
    if traps:
        _clutter(truth.root / "KDEF", truth.root / "KDEF" / "AF01")
    return truth


def write_natural_faces(
    root: Path, per_class: int = 3, seed: int = 0, split_folders: bool = False,
    traps: bool = True,
) -> Truth:
    """Writes the Natural Human Face Images layout: eight class folders of 224×224 faces.

    Args:
        root: folder to write into (created).
        per_class: images per class, named like "image (3).png" and "face 2 (copy).jpg".
        seed: drawing seed.
        split_folders: put the class folders under `train/` and `test/` (first image of
            each class in test/).
        traps: add clutter, a stray CSV, an image outside the class folders, a duplicate
            under another name in the same class and one in another class.

    Returns:
        The Truth; ids are paths relative to `root`.
    """
    folder_of = {emotion: name for name, emotion in natural_faces.FOLDERS.items()}
    faces = _draw(per_class, 1, EMOTIONS, seed)
    truth = Truth(Path(root), list(EMOTIONS))
    for (n, emotion), (face,) in sorted(faces.items()):
        top = ("test/" if n == 0 else "train/") if split_folders else ""
        name = f"image ({n + 1}).png" if n % 2 == 0 else f"face {n + 1} (copy).jpg"
        path = f"{top}{folder_of[emotion]}/{name}"
        big = cv2.resize(face, (224, 224), interpolation=cv2.INTER_CUBIC)
        _write(truth.root / path, np.repeat(big[..., None], 3, axis=2))
        truth.labels[path], truth.faces[path] = emotion, face
    if traps:
        top = "train/" if split_folders else ""
        _clutter(truth.root, truth.root / f"{top}anger")
        (truth.root / "labels.csv").write_text("file,label\nimage (1).png,anger\n")
        original = next(p for p in truth.labels if p.endswith("anger/image (1).png"))
        big = cv2.resize(truth.faces[original], (224, 224), interpolation=cv2.INTER_CUBIC)
        outside = "cover image (1).png"
        _write(truth.root / outside, big)
        truth.skipped[outside] = "emotion folder"
        for copy in (f"{top}anger/image (1) - Copy.png", f"{top}disgust/Image 9 (2).PNG"):
            _write(truth.root / copy, np.repeat(big[..., None], 3, axis=2))
            truth.labels[copy] = copy.split("/")[-2]
            truth.faces[copy] = truth.faces[original]
        truth.duplicates = 2
    return truth


def write_oversized_png(path: Path, width: int, height: int, seed: int = 0) -> None:
    """Writes a PNG whose header declares `width`×`height` pixels in a few hundred bytes.

    An 8×8 noise image is encoded, then its IHDR chunk is rewritten (CRC included) to
    claim the given size: what a decompression bomb looks like to a header check, without
    the seconds and gigabytes a real one would take to write.

    Args:
        path: the file to write (folders created).
        width: declared width in pixels.
        height: declared height in pixels.
        seed: noise seed (the pixels are not blank).
    """
    noise = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", noise)
    if not ok:
        raise ValueError("could not encode the 8×8 PNG")
    data = bytearray(encoded.tobytes())
    # Signature (8 bytes), IHDR length (4), b"IHDR" at 12, width and height at 16–24, the
    # rest of IHDR's 13 bytes, then the CRC of type and data at 29–33.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
