"""The control baselines: generated from the criteria registry (each criterion's `-only`, and a
`<label>-random` per criterion with a keep rule), stored and reloaded with their keep rule; the ids of the
baselines that existed before do not move."""

from quadmix_assets.mixing import MixtureSpec, baseline_specs
from quadmix_assets.scoring.criteria import CRITERIA, criteria


def test_controls_come_from_the_registry():
    rules = {c.name: (c.keep.name, c.keep.min_score) for c in criteria() if c.keep is not None}
    assert rules["langid"] == ("english", 0.65)  # FineWeb's English threshold on lid.176's P(en)
    specs = baseline_specs(4, CRITERIA, 0.1, rules)
    names = [s.name for s in specs]
    assert names == ["random", "english-random", *(f"{c}-only" for c in CRITERIA), "criteria-mean"]
    old = {s.name: s.mixture_id for s in baseline_specs(4, CRITERIA, 0.1)}
    assert {s.name: s.mixture_id for s in specs if s.name in old} == old  # the other baselines keep their ids
    eng = specs[1]
    assert eng.mixture_id != specs[0].mixture_id and eng.params.config_id == specs[0].params.config_id
    d = eng.to_dict()
    assert d["keep"] == [{"criterion": "langid", "min_score": 0.65}]
    assert MixtureSpec.from_dict(d) == eng
    assert "keep" not in specs[0].to_dict()
