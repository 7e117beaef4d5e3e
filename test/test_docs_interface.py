"""docs/interface.md says what the running nodes say, and every parameter is described.

The module fixture starts all nine nodes once (about 40 s; each in its own DDS domain, discovery
waited for with timeouts: see avatar_forcing_ros.tools.interface_probe).
"""
import pytest

from avatar_forcing_ros.tools import interface_docs
from avatar_forcing_ros.tools.interface_probe import (LAST_DOMAIN_ID, NODE_NAMES, EndpointInfo,
                                                      NodeInterface, ParameterInfo, probe_domains,
                                                      probe_nodes)

UPDATE = 'run python -m avatar_forcing_ros.tools.interface_docs to update'


@pytest.fixture(scope='module')
def interfaces():
    return probe_nodes()


def test_committed_docs_are_up_to_date(interfaces):
    committed = interface_docs.default_output()
    assert committed.is_file(), f'{committed} is missing: {UPDATE}'
    difference = interface_docs.difference_from(committed, interface_docs.render(interfaces))
    assert not difference, difference


def test_every_node_started_and_answered(interfaces):
    assert [i.name for i in interfaces] == list(NODE_NAMES)
    assert all(i.parameters for i in interfaces)
    assert all(i.purpose for i in interfaces), 'a node module has no docstring'
    published = {e.topic for i in interfaces for e in i.endpoints if e.direction == 'publishes'}
    assert {'image', 'user/audio', 'avatar/audio', 'avatar/motion', 'avatar/image'} <= published


def test_every_parameter_has_a_description(interfaces):
    missing = [f'{i.name}.{p.name}' for i in interfaces for p in i.parameters if not p.description.strip()]
    assert not missing, f'parameters without a description (add one in _declare_parameters): {missing}'


def test_parameter_declarations_have_ranges_and_honest_read_only_flags(interfaces):
    problems = [p for p in interface_docs.lint(interfaces) if not p.endswith('no description')]
    assert not problems, problems


def _parameter(**changes) -> ParameterInfo:
    fields = dict(name='rate', type_name='integer', default=5, description='Rate (Hz)',
                  int_range=(1, 10, 0), float_range=None, constraints='', read_only=True,
                  dynamic_typing=False, settable=False, refusal='read-only')
    return ParameterInfo(**{**fields, **changes})


def test_render_escapes_table_cells_and_marks_run_time_settings():
    node = NodeInterface('demo', 'demo: does things', {}, [
        _parameter(),
        _parameter(name='mode', type_name='string', default='a|b', description='Mode <x> | more',
                   int_range=None, constraints='a|b', read_only=False, dynamic_typing=True,
                   settable=True, refusal=''),
        _parameter(name='gain', type_name='double', default=1.0, int_range=None,
                   float_range=(0.0, 2.0, 0.5), read_only=False, settable=False, refusal='no')],
        [EndpointInfo('publishes', 'out', ('std_msgs/msg/String',), 'reliable', 'transient local')])
    page = interface_docs.render([node])
    assert '| `rate` | integer | `5` | 1 … 10 | read-only | Rate (Hz) |' in page
    assert '| `mode` | string (dynamic type) | `"a\\|b"` | a\\|b | settable | Mode &lt;x&gt; \\| more |' in page
    assert '| `gain` | double | `1.0` | 0.0 … 2.0 step 0.5 | refused: no | Rate (Hz) |' in page
    assert '| publishes | `out` | `std_msgs/msg/String` | reliable, transient local |' in page
    assert interface_docs.lint([node]) == ['demo.gain: not read-only, yet refuses its current value (no)']


def test_difference_says_how_to_update(tmp_path):
    path = tmp_path / 'interface.md'
    path.write_text('same\nold\n')
    assert interface_docs.difference_from(path, 'same\nold\n') == ''
    difference = interface_docs.difference_from(path, 'same\nnew\n')
    assert UPDATE in difference and '-old' in difference and '+new' in difference


def test_probe_domains_stay_in_fast_dds_range_for_every_pid():
    for pid in range(200):
        domains = probe_domains(pid)
        assert len(domains) == len(NODE_NAMES) + 1
        assert 101 <= domains.start and domains.stop - 1 <= LAST_DOMAIN_ID <= 232
