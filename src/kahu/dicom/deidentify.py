"""De-identification by the DICOM PS3.15 Basic Application Level Confidentiality Profile.

Each attribute of PS3.15 Table E.1-1 (the table as data: the ``dicom-anonymizer`` package's
2026c edition) gets its action, at any depth of sequences:

- **X** removed; **Z** emptied; **D** replaced by a dummy of its VR; **U** a UID replaced by
  another, the same one each time (so references stay intact: a de-identified SEG points at
  its de-identified CT); the choices "X/Z", "Z/D", "X/D", "X/Z/D" take the one that keeps
  the attribute (an IOD's type 1 and 2 attributes stay present): Z for X/Z, D otherwise;
  a sequence to replace is cleaned inside instead (its UIDs mapped, its identifying
  attributes treated by the same table); private attributes are removed;
- the patient becomes a **pseudonym**, the same for the same patient (ID and issuer) each
  time: ``PatientID`` and ``PatientName`` are ``KAHU-`` and a keyed digest;
- **options**: *retain longitudinal temporal information with modified dates* (every date
  shifted by the same number of days for one patient, times kept: intervals survive),
  *retain patient characteristics* (age, sex, size, weight, ...), *clean descriptors*
  (study, series and protocol descriptions and comments kept, with the patient's names and
  identifiers cut out of them).

Pseudonyms, UIDs and date shifts are keyed digests (HMAC-SHA256) of the original values
under the site's secret key: consistent across runs and workflows of one site, and not
reversible without the key. The result records what was done (PatientIdentityRemoved,
DeidentificationMethod and its code sequence, LongitudinalTemporalInformationModified).
Burned-in text in pixel data is not looked at (the Clean Pixel Data option is not offered).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

#: the edition of PS3.15 Table E.1-1 applied
EDITION = "PS3.15 2026c Table E.1-1"

_ACTIONS: list[tuple[str, list[tuple[int, ...]]]] = [
    ("X", table.X_TAGS),
    ("Z", table.Z_TAGS),
    ("D", table.D_TAGS),
    ("U", table.U_TAGS),
    ("D", table.Z_D_TAGS),
    ("Z", table.X_Z_TAGS),
    ("D", table.X_D_TAGS),
    ("D", table.X_Z_D_TAGS),
    ("U*", table.X_Z_U_STAR_TAGS),
]


def _compile() -> tuple[dict[int, str], list[tuple[int, int, int, str]]]:
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, str]] = []  # (tag, group mask, element mask, action)
    for action, tags in _ACTIONS:
        for entry in tags:
            if len(entry) == 2:
                exact[(entry[0] << 16) | entry[1]] = action
            else:
                group, element, group_mask, element_mask = entry
                masked.append(((group << 16) | element, group_mask, element_mask, action))
    return exact, masked


_EXACT, _MASKED = _compile()

#: Retain Patient Characteristics Option: kept as they are
PATIENT_CHARACTERISTICS = frozenset(
    {
        0x00101010,  # PatientAge
        0x00100040,  # PatientSex
        0x00101020,  # PatientSize
        0x00101030,  # PatientWeight
        0x00102160,  # EthnicGroup
        0x001021C0,  # PregnancyStatus
        0x001021A0,  # SmokingStatus
        0x00102203,  # PatientSexNeutered
        0x00102201,  # PatientSpeciesDescription
        0x00102292,  # PatientBreedDescription
    }
)
#: Clean Descriptors Option: kept, with the patient's names and identifiers cut out
DESCRIPTORS = frozenset(
    {
        0x00081030,  # StudyDescription
        0x0008103E,  # SeriesDescription
        0x00181030,  # ProtocolName
        0x00204000,  # ImageComments
        0x00321060,  # RequestedProcedureDescription
        0x00400254,  # PerformedProcedureStepDescription
        0x00400007,  # ScheduledProcedureStepDescription
        0x00081080,  # AdmittingDiagnosesDescription
        0x00102180,  # Occupation
        0x001021B0,  # AdditionalPatientHistory
        0x00104000,  # PatientComments
        0x00324000,  # StudyComments
        0x00189937,  # RequestedSeriesDescription
        0x00181400,  # AcquisitionDeviceProcessingDescription
    }
)
_BIRTH = frozenset({0x00100030, 0x00100032})  # PatientBirthDate, PatientBirthTime
_DUMMY = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
    "CS": "ANONYMIZED",
}
_NUMBERS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
_TEXT_LIMIT = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "UC": 1024}


@dataclass(frozen=True, slots=True)
class Options:
    """The PS3.15 options applied beyond the basic profile."""

    retain_dates: bool = False  # Retain Longitudinal Temporal Information, Modified Dates
    retain_patient_characteristics: bool = False
    clean_descriptors: bool = False
    #: dates move back by 1 to this many days (one number per patient)
    max_shift_days: int = 365

    def codes(self) -> list[tuple[str, str, str]]:
        """(DCM code, meaning, short name) of the profile and options (PS3.16 CID 7050)."""
        out = [("113100", "Basic Application Confidentiality Profile", "Basic")]
        if self.clean_descriptors:
            out.append(("113105", "Clean Descriptors Option", "CleanDesc"))
        if self.retain_dates:
            out.append(
                (
                    "113107",
                    "Retain Longitudinal Temporal Information Modified Dates Option",
                    "ModifDates",
                )
            )
        if self.retain_patient_characteristics:
            out.append(("113108", "Retain Patient Characteristics Option", "PatChars"))
        return out


class Deidentifier:
    """De-identifies data sets with one site key (one data set at a time: use one per
    thread)."""

    def __init__(self, key: bytes, options: Options | None = None) -> None:
        if len(key) < 16:
            raise ValueError("the de-identification key must have at least 16 bytes")
        self.key = key
        self.options = options or Options()

    # -- keyed replacements -------------------------------------------------------------------

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """The replacement of ``uid`` (a UUID-derived UID, PS3.5 B.2: at most 44 chars)."""
        return "2.25." + str(int.from_bytes(self._digest("uid", uid.strip())[:16], "big"))

    def pseudonym(self, patient_id: str, issuer: str = "") -> str:
        digest = self._digest("patient", f"{patient_id.strip()}\0{issuer.strip()}")
        return "KAHU-" + base64.b32encode(digest[:10]).decode().rstrip("=")

    def shift_days(self, patient_id: str, issuer: str = "") -> int:
        """How many days this patient's dates move back (the same each time)."""
        digest = self._digest("dates", f"{patient_id.strip()}\0{issuer.strip()}")
        return 1 + int.from_bytes(digest[:4], "big") % max(1, self.options.max_shift_days)

    # -- data sets ----------------------------------------------------------------------------

    def dataset(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (its file meta too) and return it."""
        patient_id = str(ds.get("PatientID", "") or "")
        issuer = str(ds.get("IssuerOfPatientID", "") or "")
        names = _identifiers(ds)
        shift = timedelta(days=self.shift_days(patient_id, issuer))
        self._seen: set[int] = set()  # items shared by several sequences are cleaned once
        self._clean(ds, shift, names)
        pseudonym = self.pseudonym(patient_id, issuer)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.retain_dates else "REMOVED"
        )
        codes = self.options.codes()
        ds.DeidentificationMethod = ("Kahu PS3.15 E.1-1: " + ", ".join(c[2] for c in codes))[:64]
        items = []
        for value, meaning, _ in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:  # the file's own
            meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or self.uid(
                str(meta.MediaStorageSOPInstanceUID)
            )
        return ds

    def _clean(self, ds: Dataset, shift: timedelta, names: list[str]) -> None:
        if id(ds) in self._seen:
            return
        self._seen.add(id(ds))
        for element in list(ds):
            tag = int(element.tag)
            if element.tag.is_private:
                del ds[element.tag]
                continue
            action = _action(tag)
            if action is None:
                if element.VR == "SQ":
                    for item in element.value:
                        self._clean(item, shift, names)
                continue
            self._apply(ds, element, tag, action, shift, names)

    def _apply(
        self,
        ds: Dataset,
        element: DataElement,
        tag: int,
        action: str,
        shift: timedelta,
        names: list[str],
    ) -> None:
        options, vr = self.options, element.VR
        if options.retain_patient_characteristics and tag in PATIENT_CHARACTERISTICS:
            return
        if options.clean_descriptors and tag in DESCRIPTORS and isinstance(element.value, str):
            element.value = _scrub(element.value, names)
            return
        if options.retain_dates and vr in ("DA", "DT", "TM") and tag not in _BIRTH:
            if vr != "TM":  # the days move; times of day stay
                element.value = _shifted(element.value, vr, shift)
            return
        if vr == "SQ":
            if action in ("X",):
                del ds[element.tag]
            elif action == "Z":
                element.value = Sequence()
            else:  # D, U*: keep the items, de-identified by the same rules
                for item in element.value:
                    self._clean(item, shift, names)
            return
        if action in ("U", "U*") and vr == "UI":
            element.value = _each(element.value, self.uid)
        elif action == "X":
            del ds[element.tag]
        elif action in ("Z", "U*"):
            element.value = None
        else:  # D
            element.value = _dummy(vr)


def _action(tag: int) -> str | None:
    found = _EXACT.get(tag)
    if found is not None:
        return found
    for pattern, group_mask, element_mask, action in _MASKED:
        mask = (group_mask << 16) | element_mask
        if tag & mask == pattern & mask:
            return action
    return None


def _each(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Iterable):
        return [fn(str(v)) for v in value]
    return value


def _dummy(vr: str) -> Any:
    if vr in _NUMBERS:
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    text = _DUMMY.get(vr, "ANONYMIZED")
    return text[: _TEXT_LIMIT.get(vr, 64)]


def _shifted(value: Any, vr: str, shift: timedelta) -> Any:
    def move(text: str) -> str:
        text = text.strip()
        if len(text) < 8 or not text[:8].isdigit():
            return ""  # not a date: nothing to keep
        try:
            day = date(int(text[:4]), int(text[4:6]), int(text[6:8])) - shift
        except ValueError:
            return ""
        return day.strftime("%Y%m%d") + text[8:]

    return _each(value, move)


def _identifiers(ds: Dataset) -> list[str]:
    """The patient's names and identifiers, as a descriptor might hold them."""
    found: list[str] = []
    for keyword in ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID"):
        value = ds.get(keyword)
        if value:
            found += [str(v) for v in (value if isinstance(value, list) else [value])]
    name = ds.get("PatientName")
    if name:
        found += [str(name), *(p for p in re.split(r"[\^= ]+", str(name)) if len(p) >= 2)]
    return sorted({f.strip() for f in found if f and f.strip()}, key=len, reverse=True)


def _scrub(text: str, names: list[str]) -> str:
    for name in names:
        text = re.sub(re.escape(name), "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s*[\^=]+\s*", " ", text)  # what is left of a person name's parts
    return re.sub(r"\s{2,}", " ", text).strip()


def site_key(home: Path) -> bytes:
    """The site's de-identification key (``<home>/deid.key``, made on first use, mode 0600):
    keep it secret and backed up: with it, pseudonyms can be recomputed; without it, the same
    patient gets other pseudonyms. Tasks starting together make it once: the key is written
    whole to a private file first, then linked into place (which fails if one is there)."""
    path = home / "deid.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=home, prefix=".deid-key-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another task was first: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a 32-byte key in hex")
    return key
