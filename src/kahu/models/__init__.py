"""AI models installed at this site: :mod:`~kahu.models.manifest` (what a model says about
itself, per format), :mod:`~kahu.models.archive` (bringing its files in safely, its digest,
packing them) and :mod:`~kahu.models.registry` (install, list, uninstall, per-project
availability, the model a run asks for). A model travels between sites as a DICOM series of
Kahu's binary chunks (:mod:`kahu.actions.models`)."""
