"""Small DICOM objects built in code for the classes pydicom's test files lack (PDF, KO, PR,
private SOP classes) and CT series of any size. Real files are preferred wherever they exist."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
GRAYSCALE_PR = "1.2.840.10008.5.1.4.1.1.11.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PRIVATE_CLASS = "1.3.6.1.4.1.9590.100.1.2.999"


def _base(
    sop_class: str,
    modality: str,
    *,
    study: str | None = None,
    series: str | None = None,
    patient_id: str = "SYN001",
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "Synthetic^Patient"
    ds.PatientSex = "F"
    ds.PatientBirthDate = "19700101"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def to_bytes(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def encapsulated_pdf() -> bytes:
    ds = _base(ENCAPSULATED_PDF, "DOC")
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.DocumentTitle = "Report"
    return to_bytes(ds)


def key_object() -> bytes:
    ds = _base(KEY_OBJECT_SELECTION, "KO")
    return to_bytes(ds)


def presentation_state() -> bytes:
    ds = _base(GRAYSCALE_PR, "PR")
    ref = Dataset()
    ref.SeriesInstanceUID = generate_uid()
    ds.ReferencedSeriesSequence = [ref]
    return to_bytes(ds)


def private_class() -> bytes:
    ds = _base(PRIVATE_CLASS, "OT")
    return to_bytes(ds)


def ct_series(
    count: int, size: int = 64, *, patient_id: str = "SYN001", description: str = "synthetic CT"
) -> list[bytes]:
    """``count`` CT slices of ``size``x``size`` 16-bit pixels in one series."""
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 2000, size=(size, size), dtype=np.uint16)
    out = []
    for index in range(count):
        ds = _base(CT_IMAGE, "CT", study=study, series=series, patient_id=patient_id)
        ds.SeriesDescription = description
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BodyPartExamined = "CHEST"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.ImagePositionPatient = [0, 0, float(index)]
        ds.PixelData = pixels.tobytes()
        out.append(to_bytes(ds))
    return out


def ct_volume(
    slices: int = 12,
    size: int = 32,
    *,
    pixel_spacing: float = 0.8,
    slice_gap: float = 2.5,
    patient_id: str = "VOL001",
    shuffle: bool = True,
) -> tuple[list[bytes], np.ndarray]:
    """A CT volume with full geometry: air around a soft-tissue body (40 HU) holding a bone
    sphere (700 HU). Returns the slices as files (in shuffled order unless ``shuffle`` is
    false) and the HU volume as (slices, rows, columns)."""
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    z, y, x = np.mgrid[0:slices, 0:size, 0:size]
    centre = np.array([slices / 2, size / 2, size / 2])
    body = ((y - centre[1]) ** 2 + (x - centre[2]) ** 2) < (size * 0.45) ** 2
    bone = (
        ((z - centre[0]) * slice_gap) ** 2
        + ((y - centre[1]) * pixel_spacing) ** 2
        + ((x - centre[2]) * pixel_spacing) ** 2
    ) < (min(slices * slice_gap, size * pixel_spacing) * 0.3) ** 2
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu[bone] = 700
    out = []
    for index in range(slices):
        ds = _base(CT_IMAGE, "CT", study=study, series=series, patient_id=patient_id)
        ds.SeriesDescription = "synthetic CT volume"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BodyPartExamined = "ABDOMEN"
        ds.Manufacturer = "Kahu tests"
        ds.Rows = ds.Columns = size
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
        ds.SliceThickness = slice_gap
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [
            -size * pixel_spacing / 2,
            -size * pixel_spacing / 2,
            -100.0 + index * slice_gap,
        ]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.PixelData = (hu[index].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        out.append(to_bytes(ds))
    if shuffle:
        order = np.random.default_rng(1).permutation(slices)
        out = [out[i] for i in order]
    return out, hu


MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"


def series_from_volume(
    image: object, *, modality: str = "MR", patient_id: str = "VOL002", description: str = ""
) -> list[bytes]:
    """A SimpleITK image (any orientation) as one slice per file, each with the geometry that
    puts its pixels where the image has them; intensities rescaled to 0..4095."""
    import SimpleITK as sitk

    assert isinstance(image, sitk.Image)
    array = sitk.GetArrayFromImage(image).astype(np.float64)  # (z, y, x)
    low, high = float(array.min()), float(array.max())
    pixels = np.round((array - low) / ((high - low) or 1.0) * 4095).astype(np.uint16)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    out = []
    for index in range(pixels.shape[0]):
        ds = _base(
            MR_IMAGE if modality == "MR" else CT_IMAGE,
            modality,
            study=study,
            series=series,
            patient_id=patient_id,
        )
        ds.SeriesDescription = description or f"{modality} volume"
        ds.FrameOfReferenceUID = frame_of_reference
        ds.InstanceNumber = index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Manufacturer = "Kahu tests"
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.ImageOrientationPatient = [float(v) for v in (*direction[:, 0], *direction[:, 1])]
        origin = image.TransformIndexToPhysicalPoint((0, 0, index))
        ds.ImagePositionPatient = [round(float(v), 4) for v in origin]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = pixels[index].tobytes()
        out.append(to_bytes(ds))
    return out
