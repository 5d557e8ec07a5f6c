"""Composition-only metal flags: charge balance, intermetallic-like formulas, likely metals.

Used where no band gap is known (the unlabeled screening pool) to keep metals out of an
eps-only ranking. Split out of ``dtnn_jax.data.records`` (which re-exports these names).
"""

from __future__ import annotations

import functools
import math
import warnings

from pymatgen.core import Composition, Element, Structure

ELECTRONEGATIVITY_MARGIN = 0.1
"""Least Pauling electronegativity by which every anion must exceed every cation in
:func:`charge_balanced`."""


def oxidation_states(symbol: str) -> tuple[int, ...]:
    """Nonzero oxidation states :func:`charge_balanced` allows for an element.

    pymatgen's ``Element.icsd_oxidation_states`` (states seen in the ICSD), or
    ``Element.common_oxidation_states`` for elements without ICSD statistics (Au, Pt, Os,
    Tc, noble gases, heavy actinides): the same lists as ``Composition.oxi_state_guesses``.
    """
    element = Element(symbol)
    states = element.icsd_oxidation_states or element.common_oxidation_states
    return tuple(sorted(int(s) for s in states if s != 0))


def _pauling_hundredths(symbol: str) -> int | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns (and returns NaN) for He, Ne, Ar
        x = Element(symbol).X
    return None if math.isnan(x) else round(100 * x)


def _net_charges(states: tuple[int, ...], count: int) -> tuple[int, int]:
    """Net charges of ``count`` sites of one element, each site taking one of ``states``.

    Returns two bitsets: bit ``k`` of the first is set if net charge ``+k`` (k > 0) is
    reachable, bit ``k`` of the second if ``-k`` is.
    """
    low = min(states)
    bits = 1  # bit j: net charge j + (number of sites so far) * low is reachable
    for _ in range(count):
        grown = 0
        for s in states:
            grown |= bits << (s - low)
        bits = grown
    offset = count * low  # net charge of bit 0
    positive = negative = 0
    j = 0
    while bits:
        if bits & 1:
            net = j + offset
            if net > 0:
                positive |= 1 << net
            elif net < 0:
                negative |= 1 << -net
        bits >>= 1
        j += 1
    return positive, negative


def _minkowski(a: int, b: int) -> int:
    """Bitset of sums x + y for x in bitset ``a`` and y in bitset ``b``."""
    out, shift = 0, 0
    while b:
        if b & 1:
            out |= a << shift
        b >>= 1
        shift += 1
    return out


@functools.lru_cache(maxsize=16384)
def _balanced_reduced(amounts: tuple[tuple[str, int], ...], margin_hundredths: int) -> bool:
    ranked = []  # (electronegativity, symbol, positive-net bitset, negative-net bitset)
    for symbol, count in amounts:
        x = _pauling_hundredths(symbol)
        states = oxidation_states(symbol)
        if x is None or not states:
            return False
        ranked.append((x, symbol, *_net_charges(states, count)))
    ranked.sort()
    for cut in range(1, len(ranked)):
        cations, anions = ranked[:cut], ranked[cut:]
        if anions[0][0] - cations[-1][0] < margin_hundredths:
            continue
        positive = functools.reduce(_minkowski, (c[2] for c in cations), 1)
        negative = functools.reduce(_minkowski, (a[3] for a in anions), 1)
        if positive & negative:
            return True
    return False


def charge_balanced(composition: Composition | Structure | str) -> bool:
    """Whether a formula admits an ionic, charge-balanced assignment of oxidation states.

    The rule (a composition-only proxy for "has a band gap", used to flag likely metals
    where no gap is known): the reduced formula has at least two elements, and its elements
    split into cations (positive states) and anions (negative states) such that

    * each site takes a state from :func:`oxidation_states` (pymatgen's ICSD lists, as in
      ``Composition.oxi_state_guesses``); sites of one element may differ (mixed valence as
      in Fe3O4, polyanions as in N3-, S3 2-), but the element's net charge has the sign of
      its role (nonzero: unlike ``oxi_state_guesses``, no element is left neutral);
    * the charges sum to zero over the reduced formula (the same unit as pymatgen's
      ``oxi_state_guesses(max_sites=-1)``; a supercell would admit more mixed valence);
    * every anion is more electronegative than every cation by at least
      ``ELECTRONEGATIVITY_MARGIN`` (0.1) on the Pauling scale (SMACT's "Pauling test" with
      a margin).

    Elements (Sb, Ag, Co, also Si or Se) and intermetallics (CuSn, NiAl; SnSb, whose
    Sn2+/Sb2- or Sn3+/Sb3- assignments fail the margin at 0.09) come out False; ordinary
    oxides, halides, nitrides and chalcogenides come out True. The search is exact and
    polynomial (bitsets of reachable charge sums), so it needs no time guard and gives the
    same answer on every machine. Results are cached by reduced formula.

    Known failure modes, measured in ``dtnn_jax/data/PROVENANCE.md``:

    * charge-balanced metals, called True: transition-metal nitrides, carbides and
      suboxides (TiN, ZrN, NbC, TiO, NbO), metallic oxides (RuO2, ReO3, CrO2, SrVO3,
      LaNiO3), layered metallic dichalcogenides (NbSe2, TaS2), some pnictides (Cu3Sb, NiSb);
    * insulators called False (101 of the 1,056 Petousis 2017 insulators, 9.6%): elemental
      semiconductors; peroxides, polyhalides, halogen oxyanions (KClO4: Cl+7 is not an ICSD
      state) and other polyanions; aurides and Au(I) salts (Au has only +3 listed);
      half-Heusler and Zintl semiconductors (ScNiBi, LiMgBi); compounds whose formal charges
      run against the Pauling order (Pt, Pd, Ir hydrides and pnictides such as Na2PtH6,
      PtP2) or are within the margin (Bi2Te3, BiTeI).

    The oxidation-state lists come from the installed pymatgen; the shipped pool's flags
    were computed with the version named in its ``metal_flags`` metadata.

    Args:
        composition: a pymatgen ``Composition``, a ``Structure`` (its composition) or a
            formula string.

    Raises:
        ValueError: if the reduced formula has non-integer amounts (partial occupancies).
    """
    if isinstance(composition, Structure):
        composition = composition.composition
    elif not isinstance(composition, Composition):
        composition = Composition(composition)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen sorts by electronegativity: warns for He, Ne
        reduced = composition.reduced_composition
    amounts = []
    for element, amount in sorted(reduced.get_el_amt_dict().items()):
        if abs(amount - round(amount)) > 1e-6:
            raise ValueError(f"{composition.formula}: charge balance needs integer amounts")
        if round(amount) > 0:
            amounts.append((element, round(amount)))
    if len(amounts) < 2:
        return False
    return _balanced_reduced(tuple(amounts), round(100 * ELECTRONEGATIVITY_MARGIN))


ANION_ELEMENTS = frozenset({"N", "O", "F", "Cl", "Br", "I", "S", "Se", "Te", "H"})
"""The anions of ordinary ionic insulators (nitrides, oxides, halides, chalcogenides,
hydrides); see :func:`intermetallic_like`."""


def intermetallic_like(composition: Composition | Structure | str) -> bool:
    """Whether a charge-balanced formula still looks like a metal: no element of
    ``ANION_ELEMENTS`` and an open-shell metal (groups 3-10, lanthanides, actinides).

    Silicides, carbides, borides, germanides and pnictides of those metals (HfSi, Ti2C,
    ZrSb, Sc2BC2) balance formally (Hf4+ Si4-) but are nearly all metallic, and they top an
    eps-only screen. Zintl and d10 pnictides (Mg3Sb2, LiZnAs, CdSiP2) are kept. Measured on
    the 1,056 Petousis 2017 insulators it calls 15 of the charge-balanced ones
    intermetallic-like (FeP2, CoSb3, TiCoSb, ScNiSb, Li3LaSb2, ...).
    """
    if isinstance(composition, Structure):
        composition = composition.composition
    elif not isinstance(composition, Composition):
        composition = Composition(composition)
    symbols = {el.symbol for el in composition.elements}
    if symbols & ANION_ELEMENTS:
        return False
    return any(_open_shell_metal(s) for s in symbols)


def _open_shell_metal(symbol: str) -> bool:
    element = Element(symbol)
    d_block = element.is_transition_metal and element.group <= 10
    return d_block or element.is_lanthanoid or element.is_actinoid


def likely_metal(
    composition: Composition | Structure | str,
    *,
    band_gap_ev: float = float("nan"),
    balanced: bool | None = None,
) -> bool:
    """Whether a crystal should be treated as a (likely) metal, not ranked as a dielectric.

    A known band gap decides (metal iff ``band_gap_ev <= 0``); else it is a likely metal
    iff its formula is not :func:`charge_balanced` (``balanced``, if given, is used instead
    of recomputing it) or is :func:`intermetallic_like`. See those two for the failure
    modes: on the 1,056 Petousis 2017 insulators the rule calls 116 (11.0%) likely metals.

    Membership of a subset that is insulating by construction (``INSULATOR_SOURCES``) does
    not override the composition: 86 entries of the shipped pool's piezoelectric subset
    fail the charge balance, and among them are plain metals (GaAg2, Li2AgSn, LiPd, DyCu5)
    that would otherwise top an eps-only screen. The flag stays on the records as
    information.
    """
    if math.isfinite(band_gap_ev):
        return band_gap_ev <= 0
    if balanced is None:
        balanced = charge_balanced(composition)
    return not balanced or intermetallic_like(composition)
