"""Dataset summary library functions and the `dtnn data summary` command."""

from __future__ import annotations

import argparse

from dtnn_jax.cli import data as data_cli
from dtnn_jax.data import load_petousis2017, plot_summary, summarize


def test_summarize_counts():
    records = load_petousis2017()
    summary = summarize(records)
    assert summary["n_records"] == 1056
    assert sum(summary["crystal_systems"].values()) == 1056
    assert summary["atoms_per_structure"]["min"] >= 1
    s = summary["eps_poly"]
    assert s["electronic"]["min"] > 1.0
    assert s["total"]["median"] > s["electronic"]["median"]


def test_plot_summary_writes_png(tmp_path):
    path = plot_summary(load_petousis2017()[:50], tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_summary(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "summary.png"
    args = parser.parse_args(["data", "summary", "--out-png", str(out)])
    assert args.func(args) == 0
    assert out.stat().st_size > 1000
    text = capsys.readouterr().out
    assert "records: 1056" in text and "cubic" in text and "eps_poly" in text


def test_cli_summary_per_source_reports_born_charges(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "phonondb.png"
    args = parser.parse_args(["data", "summary", "--source", "phonondb2018", "--out-png", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "Born charges:" in text and "vasp_pbesol" in text and "elements:" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
