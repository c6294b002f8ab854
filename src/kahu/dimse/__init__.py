"""DICOM over DIMSE (pynetdicom): C-ECHO, C-STORE, C-FIND, C-MOVE and C-GET."""
