"""Optional loader for the Materials Project dielectric set through ``mp-api``.

Needs ``pip install dtnn-jax[mp]`` and an API key in the ``MP_API_KEY`` environment
variable. The tensors come from the dielectric endpoint; structure and band gap from the
summary endpoint, joined on ``material_id``.

Always run :func:`dtnn_jax.data.frame_check` on the result before training: tensors served
by some endpoints are in a standardised frame that need not match the structure served
beside them, e.g.::

    records = load_materials_project()
    print(frame_check(records, "total").summary())
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from dtnn_jax.data.labelled import _validate
from dtnn_jax.data.records import FIDELITY_MP_PBE, SYMPREC_ANGSTROM, DielectricRecord

DIELECTRIC_FIELDS = ("material_id", "total", "ionic", "electronic")
SUMMARY_FIELDS = ("material_id", "structure", "band_gap", "formula_pretty")


def _first_present(doc: dict[str, Any], keys: Sequence[str]) -> Any:
    return next((doc[k] for k in keys if doc.get(k) is not None), None)


def _as_dict(doc: Any) -> dict[str, Any]:
    """A plain dict from an mp-api document (pydantic model) or a dict."""
    if isinstance(doc, dict):
        return doc
    if hasattr(doc, "model_dump"):
        return doc.model_dump()
    return dict(doc)


def records_from_mp_docs(
    dielectric_docs: Iterable[Any],
    summary_docs: Iterable[Any],
    symprec: float = SYMPREC_ANGSTROM,
) -> list[DielectricRecord]:
    """Join mp-api dielectric and summary documents into validated records.

    Args:
        dielectric_docs: documents with ``material_id`` and 3x3 ``total``, ``ionic`` and
            ``electronic`` tensors; a per-atom ``born_charges`` (or ``born``) field,
            [n_atoms][3][3] in the summary structure's site order and frame, is kept on
            the record (records get ``source="materials_project"``, ``fidelity="mp_pbe"``).
        summary_docs: documents with ``material_id``, ``structure`` (pymatgen Structure or
            its dict) and ``band_gap`` (eV).
        symprec: spglib tolerance (Angstrom).

    Raises:
        DataValidationError: for any dielectric document without a summary or with bad
            data, listing all of them.
    """
    summaries = {str(d["material_id"]): d for d in map(_as_dict, summary_docs)}
    raw = []
    for doc in map(_as_dict, dielectric_docs):
        mid = str(doc["material_id"])
        summary = summaries.get(mid, {})
        raw.append(
            {
                "material_id": mid,
                "structure": summary.get("structure"),
                "e_electronic": doc.get("electronic"),
                "e_ionic": doc.get("ionic"),
                "e_total": doc.get("total"),
                "band_gap_ev": summary.get("band_gap"),
                "born_charges": _first_present(doc, ("born_charges", "born")),
                "source": "materials_project",
                "fidelity": FIDELITY_MP_PBE,
            }
        )
    return _validate(raw, "Materials Project documents", symprec)


def load_materials_project(
    material_ids: Sequence[str] | None = None,
    api_key: str | None = None,
    symprec: float = SYMPREC_ANGSTROM,
) -> list[DielectricRecord]:
    """Fetch dielectric tensors, structures and band gaps from the Materials Project.

    Args:
        material_ids: restrict to these ids; default: every material with a dielectric doc.
        api_key: Materials Project API key; default: ``$MP_API_KEY``.
        symprec: spglib tolerance (Angstrom).

    Raises:
        ImportError: if ``mp-api`` is not installed.
        RuntimeError: if no API key is given or set.
    """
    try:
        from mp_api.client import MPRester
    except ImportError as err:
        raise ImportError(
            "the Materials Project loader needs mp-api: pip install 'dtnn-jax[mp]'"
        ) from err
    api_key = api_key or os.environ.get("MP_API_KEY")
    if not api_key:
        raise RuntimeError("no Materials Project API key: set MP_API_KEY or pass api_key")
    ids = list(material_ids) if material_ids is not None else None
    with MPRester(api_key) as mpr:
        dielectric = mpr.materials.dielectric.search(
            material_ids=ids, fields=list(DIELECTRIC_FIELDS)
        )
        found = [str(d.material_id) for d in dielectric]
        summary = mpr.materials.summary.search(material_ids=found, fields=list(SUMMARY_FIELDS))
    return records_from_mp_docs(dielectric, summary, symprec)
