"""Pure DICOM logic: UID rules, metadata flattening and normalization, SOP class facts."""

from pydicom import config as _pydicom_config

# Data arriving from the field often breaks its VR (anonymizers are a common cause). Kahu keeps
# such values and flags them itself (see kahu.dicom.metadata), so pydicom must neither warn nor
# raise while reading them.
_pydicom_config.settings.reading_validation_mode = _pydicom_config.IGNORE
