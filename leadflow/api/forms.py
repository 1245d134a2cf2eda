"""Marketing's forms (forms/*.yaml): the hosted page GET /f/{form} and the plain HTML POST to
/f/{form} from the page or from any site of LEADFLOW_SITES."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["forms"])
