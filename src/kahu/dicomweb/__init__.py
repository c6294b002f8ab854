"""DICOMweb (PS3.18) under /dicomweb: QIDO-RS, WADO-RS and STOW-RS."""
