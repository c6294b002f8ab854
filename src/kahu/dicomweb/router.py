"""The /dicomweb router: QIDO-RS, WADO-RS, STOW-RS, all behind authentication."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from kahu.api.deps import current_user
from kahu.dicomweb import qido, stow, wado

router = APIRouter(prefix="/dicomweb", dependencies=[Depends(current_user)], tags=["dicomweb"])


@router.get("/", name="dicomweb_root", summary="DICOMweb root", include_in_schema=False)
def root() -> dict[str, str]:
    return {"service": "DICOMweb (QIDO-RS, WADO-RS, STOW-RS)"}


router.include_router(qido.router)
router.include_router(wado.router)
router.include_router(stow.router)
