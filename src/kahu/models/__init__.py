"""AI models installed at this site: :mod:`~kahu.models.manifest` (what a model says about
itself, per format), :mod:`~kahu.models.archive` (bringing its files in safely, its digest),
:mod:`~kahu.models.registry` (install, list, uninstall, per-project availability, the model a
run asks for) and :mod:`~kahu.models.dicom` (a model as a DICOM instance)."""
