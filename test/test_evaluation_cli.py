"""The evaluate command: report files, several bags, damaged bags, exit status, layering."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar_forcing_ros.evaluation.cli import main
from avatar_forcing_ros.evaluation.synthetic_bag import SyntheticSession, write_synthetic_bag
from avatar_forcing_ros.portable import motion_space

FRAMES = 500


def _session(seed: int, holds: int = 0) -> SyntheticSession:
    rng = np.random.default_rng(seed)
    user = np.cumsum(rng.normal(size=(FRAMES, motion_space.DIM)), axis=0) * 0.05
    avatar = np.roll(user, 10, axis=0) + rng.normal(size=user.shape) * 0.01
    hold = np.zeros(FRAMES, bool)
    hold[:holds] = True
    audio = (rng.normal(size=FRAMES * 640) * 0.1).astype(np.float32)
    return SyntheticSession(avatar, user_motion=user, is_hold=hold, avatar_audio=audio,
                            image_jpeg=b'\xff\xd8' + bytes(2000))


@pytest.fixture(scope='module')
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('bags')
    write_synthetic_bag(root / 'good', _session(1))
    write_synthetic_bag(root / 'holdy', _session(2, holds=25), storage='sqlite3')
    write_synthetic_bag(root / 'cut', _session(3))
    mcap = next((root / 'cut').glob('*.mcap'))
    os.truncate(mcap, mcap.stat().st_size // 2)
    return {'good': root / 'good', 'holdy': root / 'holdy', 'cut': root / 'cut'}


def test_several_bags_one_report(bags, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main(['evaluate', str(bags['good']), str(bags['holdy']), '-o', str(out)]) == 0
    data = json.loads((out / 'evaluation.json').read_text())
    assert [b['bag'] for b in data['bags']] == ['good', 'holdy']
    assert [b['generation']['hold_frames'] for b in data['bags']] == [0, 25]
    assert [b['reactiveness']['groups']['pose']['best_lag_frames'] for b in data['bags']] == [10, 10]
    html = (out / 'report.html').read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 8                               # 4 plots per bag
    assert all((out / name).stat().st_size > 1000 for name in images)
    assert '<th>good</th><th>holdy</th>' in html
    summary = capsys.readouterr().out
    assert 'hold frames' in summary and re.search(r'hold frames\s+0\s+25', summary)


def test_truncated_bag_partial_results_and_failure(bags, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main([str(bags['good']), str(bags['cut']), '-o', str(out)]) == 1
    err = capsys.readouterr().err
    assert 'truncated' in err and 'cut' in err
    good, cut = json.loads((out / 'evaluation.json').read_text())['bags']
    assert good['ok'] and not cut['ok']
    assert any('announces' in p for p in cut['problems'])
    frames = cut['generation']['frames']
    assert FRAMES // 4 < frames < FRAMES                # about half the bag was salvaged
    assert cut['rate']['avatar_motion']['missing_frames'] == 0
    assert (out / 'report.html').read_text().count('Problems:') == 1


def test_non_finite_latents_left_out_and_reported(tmp_path, capsys):
    session = _session(4)
    session.avatar_motion[[50, 51]] = np.nan
    session.avatar_motion[300, 0] = np.inf
    write_synthetic_bag(tmp_path / 'nan', session)
    out = tmp_path / 'out'
    # the bag was read completely: its unusable frames are reported, the exit status stays 0
    assert main([str(tmp_path / 'nan'), '-o', str(out)]) == 0
    assert 'warning: /avatar/motion: 3 of 500 frames have non-finite latents' in \
        capsys.readouterr().err
    result = json.loads((out / 'evaluation.json').read_text())['bags'][0]
    assert not result['ok'] and not result['damaged']
    assert [p for p in result['problems'] if 'non-finite' in p] == [
        '/avatar/motion: 3 of 500 frames have non-finite latents (NaN or inf); left out of '
        'reactiveness, expressiveness and lip-sync']
    assert result['generation']['frames'] == FRAMES                 # timing keeps every frame
    assert result['reactiveness']['groups']['pose']['best_lag_frames'] == 10
    assert np.isfinite(result['expressiveness']['variance_mean'])
    assert result['expressiveness']['groups']['pose']['sid']['sid_bits'] > 0
    assert (out / 'report.html').is_file()


def test_mcap_of_only_the_magic_is_a_damaged_bag(bags, tmp_path, capsys):
    """rosbags raises TypeError (not ReaderError) on an MCAP file that ends after its magic."""
    magic = tmp_path / 'magic'
    magic.mkdir()
    shutil.copy(bags['good'] / 'metadata.yaml', magic)
    (magic / next(bags['good'].glob('*.mcap')).name).write_bytes(b'\x89MCAP0\r\n')
    out = tmp_path / 'out'
    assert main([str(bags['good']), str(magic), '-o', str(out)]) == 1
    assert 'regular reader failed' in capsys.readouterr().err
    good, damaged = json.loads((out / 'evaluation.json').read_text())['bags']
    assert good['ok'] and not damaged['ok'] and damaged['message_counts'] == {}
    assert any('regular reader failed' in p for p in damaged['problems'])


def test_damaged_reference_is_reported(bags, tmp_path, capsys):
    out = tmp_path / 'out'
    assert main([str(bags['good']), '--reference', str(bags['cut']), '-o', str(out)]) == 1
    captured = capsys.readouterr()
    assert re.search(r'error: reference: .*cut.*truncated', captured.err)
    assert 'reference: ' in captured.out
    data = json.loads((out / 'evaluation.json').read_text())
    assert any('truncated' in p for p in data['reference_problems'])
    good = data['bags'][0]
    assert good['ok'] and good['expressiveness']['available']   # evaluated with what was read


def test_missing_bag_reported(tmp_path, capsys):
    assert main([str(tmp_path / 'nope'), '-o', str(tmp_path / 'out')]) == 1
    assert 'does not exist' in capsys.readouterr().err


def test_bare_mcap_file_and_topic_override(bags, tmp_path):
    mcap = next(bags['good'].glob('*.mcap'))
    out = tmp_path / 'out'
    assert main([str(mcap), '-o', str(out), '--topic', 'user_motion=/elsewhere']) == 0
    result = json.loads((out / 'evaluation.json').read_text())['bags'][0]
    assert result['generation']['frames'] == FRAMES
    assert result['reactiveness']['available'] is False


def test_bad_topic_option_is_a_usage_error(bags, tmp_path):
    assert main([str(bags['good']), '-o', str(tmp_path), '--topic', 'nonsense=/x']) == 2


def test_module_entry_point_without_rclpy(bags, tmp_path):
    """``python -m`` works and the evaluation layer never imports rclpy or message modules."""
    code = ('import sys, runpy; sys.argv = ["x", sys.argv[1], "-o", sys.argv[2], "--no-progress"];'
            '\ntry:\n runpy.run_module("avatar_forcing_ros.evaluation", run_name="__main__")'
            '\nexcept SystemExit as e:\n bad = [m for m in sys.modules if m.startswith("rclpy")'
            ' or (m.endswith(".msg") and not m.startswith("rosbags"))]\n assert not bad, bad\n raise')
    proc = subprocess.run([sys.executable, '-c', code, str(bags['good']), str(tmp_path / 'o')],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr
    assert 'end-to-end latency p50 (ms)' in proc.stdout


def test_output_that_is_a_file_is_a_usage_error(bags, tmp_path, capsys):
    (tmp_path / 'taken').write_text('')
    assert main([str(bags['good']), '-o', str(tmp_path / 'taken')]) == 2
    assert 'error: cannot create the output directory' in capsys.readouterr().err


def test_a_defect_of_the_evaluation_costs_only_that_bag(bags, tmp_path, capsys, monkeypatch):
    """A metric that raises on some unforeseen input (stood in for by a patched metric: no such
    input is known) still leaves evaluation.json, the report and the other bag's figures."""
    from avatar_forcing_ros.evaluation import evaluate
    real, calls = evaluate.lipsync, []

    def lipsync_failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise FloatingPointError('unforeseen')
        return real(*args, **kwargs)
    monkeypatch.setattr(evaluate, 'lipsync', lipsync_failing_once)
    out = tmp_path / 'out'
    assert main([str(bags['good']), str(bags['holdy']), '-o', str(out)]) == 1
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    assert 'the evaluation failed on this bag (FloatingPointError: unforeseen)' in err
    failed, holdy = json.loads((out / 'evaluation.json').read_text())['bags']
    assert failed['damaged'] and failed['message_counts']['/avatar/motion'] == FRAMES
    assert holdy['ok'] and holdy['generation']['hold_frames'] == 25
    assert (out / 'report.html').is_file()
