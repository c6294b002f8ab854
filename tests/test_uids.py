from __future__ import annotations

import pytest

from kahu.dicom.uids import is_valid_uid, validate_ae_title, validate_uid
from kahu.errors import InvalidInput, InvalidUID
from kahu.storage.base import validate_key


class TestUids:
    @pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0", "2.25.1234567890", "1." + "2" * 62])
    def test_valid(self, uid: str) -> None:
        assert is_valid_uid(uid)
        assert validate_uid(uid) == uid

    @pytest.mark.parametrize(
        "uid",
        [
            "",
            "1..2",
            "1.02",
            "../../etc/passwd",
            "1.2.3.",
            ".1.2",
            "1.2.a",
            "1/2",
            "1." + "2" * 63,
            "1.2 ",
            "1.2\x00",
            None,
            12,
        ],
    )
    def test_invalid_is_refused_with_its_name(self, uid: object) -> None:
        assert not is_valid_uid(uid)
        with pytest.raises(InvalidUID, match="SeriesInstanceUID"):
            validate_uid(uid, "SeriesInstanceUID")


class TestAeTitles:
    def test_stripped(self) -> None:
        assert validate_ae_title(" STUDY1 ") == "STUDY1"

    @pytest.mark.parametrize("aet", ["", "A" * 17, "BAD\\AE", "TAB\tAE"])
    def test_invalid(self, aet: str) -> None:
        with pytest.raises(InvalidInput):
            validate_ae_title(aet)


class TestBlobKeys:
    @pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "a/../b", "a\\b", "", "a b"])
    def test_unsafe_keys_are_refused(self, key: str) -> None:
        with pytest.raises(InvalidInput):
            validate_key(key)

    def test_uid_path_is_accepted(self) -> None:
        assert validate_key("1.2.3/1.2.3.4/1.2.3.4.5.dcm") == "1.2.3/1.2.3.4/1.2.3.4.5.dcm"
