import json
import random

import pytest
import torch

from switch import FeatureExtractor, SwitchError, SwitchNetwork, last_token_pool, retain, retained_count, switch_text
from switch.tiny import tiny_opt, words_of

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
OBJECTS = ["car", "ball", "house", "tree", "shirt", "bird", "door", "flower"]
BOOKS = ["the hobbit", "moby dick", "dune", "emma", "ulysses", "beloved", "walden", "hamlet"]


def colour_q(rng):
    return rng.choice(["What color is the {o}?", "Which colour does the {o} have?", "Is the {o} {c}?"]).format(
        o=rng.choice(OBJECTS), c=rng.choice(COLOURS))


def title_q(rng):
    return rng.choice(["What is the title of this book?", "Who wrote {b}?", "What is written on the cover of {b}?",
                       "Is this book titled {b}?"]).format(b=rng.choice(BOOKS))


def family(fn, n, seed):
    rng = random.Random(seed)
    return [fn(rng) for _ in range(n)]


OUT_OF_FAMILY = ["translate this sentence to french", "summarize the following article",
                 "write a short poem about the sea", "please list three prime numbers",
                 "tell me a joke about cats", "convert ten miles to kilometers"]
ALL_WORDS = words_of(family(colour_q, 200, 9) + family(title_q, 200, 9) + OUT_OF_FAMILY)


def extractor():
    model, tokenizer = tiny_opt(ALL_WORDS, seed=0)
    return FeatureExtractor.from_model(model, tokenizer, "tiny-opt")


def test_last_token_pooling_both_padding_sides():
    model, tokenizer = tiny_opt(ALL_WORDS)
    texts = ["what color is the car ?", "dune"]
    feats = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model.model.decoder(**batch).last_hidden_state
        feats[side] = last_token_pool(hidden, batch["attention_mask"])
    single = []
    for text in texts:
        batch = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            single.append(model.model.decoder(**batch).last_hidden_state[0, -1])
    # right padding: the position picked is the last real token, not a pad
    assert torch.allclose(feats["right"][1], single[1], atol=1e-5)
    assert torch.allclose(feats["left"][1], single[1], atol=1e-5)
    assert torch.allclose(feats["left"][0], single[0], atol=1e-5)


def test_switch_text_strips_image_system_and_suffix():
    text = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
            "detailed, and polite answers to the human's questions. USER: <image>\nWhat is written here?\n"
            "Answer the question using a single word or phrase.")
    assert switch_text(text) == "What is written here?"
    assert switch_text("Simplify", "The cat sat.") == "Simplify\nThe cat sat."
    with pytest.raises(SwitchError, match="empty instruction"):
        switch_text("<image>\n")


def fitted(classes=("colour", "title")):
    fns = {"colour": colour_q, "title": title_q}
    texts, labels = [], []
    for c in classes:
        texts += family(fns[c], 16, 1)
        labels += [c] * 16
    return SwitchNetwork(extractor(), hidden=200, epochs=300, reject=True).fit(texts, labels)


def test_fit_predict_separable_families_heldout_accuracy():
    switch = fitted()
    held = [(t, "colour") for t in family(colour_q, 100, 2)] + [(t, "title") for t in family(title_q, 100, 2)]
    predictions = switch.predict([t for t, _ in held])
    accuracy = sum(p == y for (p, _), (_, y) in zip(predictions, held)) / len(held)
    assert accuracy >= 0.99
    assert switch.parameter_count == 64 * 200 + 200 + 200 * 2 + 2


def test_paper_size_parameter_count():
    from switch import SwitchClassifier

    assert SwitchClassifier(768, 5, 200).parameter_count == 154_805  # ~154K as in the paper


def test_save_load_predicts_identically(tmp_path):
    switch = fitted()
    texts = family(colour_q, 20, 3) + family(title_q, 20, 3)
    switch.save(tmp_path / "sw")
    meta = json.loads((tmp_path / "sw/switch.json").read_text())
    assert {"extractor", "layer", "pooling", "labels", "threshold", "feature_dim", "checksums"} <= set(meta)
    loaded = SwitchNetwork.load(tmp_path / "sw")
    assert loaded.predict(texts) == switch.predict(texts)


def test_out_of_family_query_is_rejected():
    switch = fitted()
    rejected = [label is None for label, _ in switch.predict(OUT_OF_FAMILY)]
    assert sum(rejected) >= 5  # at least 5 of the 6 unrelated instructions go to the bare base
    in_family = family(colour_q, 100, 5) + family(title_q, 100, 5)
    accepted = [label is not None for label, _ in switch.predict(in_family)]
    assert sum(accepted) / len(accepted) >= 0.95


def test_third_class_keeps_first_two_correct():
    def count_q(rng):
        return rng.choice(["How many {o} are there?", "Count the {o}.", "How many {o} can you see?"]).format(
            o=rng.choice(OBJECTS))

    texts = family(colour_q, 16, 1) + family(title_q, 16, 1) + family(count_q, 16, 1)
    labels = ["colour"] * 16 + ["title"] * 16 + ["count"] * 16
    words = words_of(texts + family(colour_q, 50, 4) + family(title_q, 50, 4) + family(count_q, 50, 4))
    model, tokenizer = tiny_opt(words)
    switch = SwitchNetwork(FeatureExtractor.from_model(model, tokenizer, "tiny-opt"), epochs=300).fit(texts, labels)
    for fn, label in ((colour_q, "colour"), (title_q, "title"), (count_q, "count")):
        predictions = switch.predict(family(fn, 50, 4))
        assert sum(p == label for p, _ in predictions) / 50 >= 0.98


def test_one_class_routes_everything():
    switch = SwitchNetwork(extractor()).fit(["What color is the car?"] * 3, ["only"] * 3)
    assert [p for p, _ in switch.predict(["Who wrote dune?", "What color is the bird?"])] == ["only", "only"]


def test_bad_switch_directories(tmp_path):
    switch = fitted()
    switch.save(tmp_path / "sw")
    with pytest.raises(SwitchError, match="do not match"):
        SwitchNetwork.load(tmp_path / "sw", labels=["a", "b"])
    weights = tmp_path / "sw/switch.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(SwitchError, match="checksum mismatch"):
        SwitchNetwork.load(tmp_path / "sw")
    weights.unlink()
    with pytest.raises(SwitchError, match="missing file"):
        SwitchNetwork.load(tmp_path / "sw")
    with pytest.raises(SwitchError, match="not a switch directory"):
        SwitchNetwork.load(tmp_path)
    switch.save(tmp_path / "sw2")
    other, tok = tiny_opt(ALL_WORDS)
    other = other.__class__(other.config.__class__(**{**other.config.to_dict(), "hidden_size": 32,
                                                      "word_embed_proj_dim": 32}))
    with pytest.raises(SwitchError, match="expects 64"):
        SwitchNetwork.load(tmp_path / "sw2", extractor=FeatureExtractor.from_model(other, tok, "tiny-opt"))
    with pytest.raises(SwitchError, match="empty instruction"):
        switch.predict([""])


def test_extractor_loaded_once_and_cache(tmp_path):
    ext = FeatureExtractor("tiny-opt", cache_dir=tmp_path)
    first = ext(["what color is the car ?", "dune"])
    ext(["who wrote dune ?"])
    assert ext.load_count == 1
    assert list(tmp_path.glob("features-*.safetensors"))
    assert torch.equal(ext(["dune"])[0], first[1])


def test_retention_sampler():
    assert retained_count(1_000_000) == 100 and retained_count(1000) == 16 and retained_count(5) == 5
    records = list(range(1000))
    assert retain(records, seed=1) == retain(records, seed=1) != retain(records, seed=2)
    assert retain(records, 0.01, 4, seed=0) == sorted(retain(records, 0.01, 4, seed=0)) and len(
        retain(records, 0.01, 4)) == 10


def test_repeated_instructions_do_not_collapse_the_rejection_radius():
    # Templated tasks retain the same instruction many times; the radius must come from distinct ones,
    # or float noise (e.g. GPU vs CPU features) would reject the very instructions that were retained.
    texts = ["What is written on the sign?"] * 8 + ["What color is the shape on the left?"] * 8
    switch = SwitchNetwork(extractor(), epochs=100, reject=True).fit(texts, ["ocr"] * 8 + ["shapes"] * 8)
    assert switch.rejection.views[0].threshold > 0
    features = switch.features(texts[:1])
    noisy = features + 1e-4 * switch.std * torch.randn_like(features)  # 1e-4 in standardised features
    assert [p for p, _ in switch.route(noisy, [noisy])] == ["ocr"]
    assert [p for p, _ in switch.predict(["What color is the shape on the left?"])] == ["shapes"]


def test_features_at_several_views_equal_one_extractor_per_view():
    ext = extractor()
    texts = family(colour_q, 10, 4) + family(title_q, 10, 4)
    last, mean = ext.features_at(texts, [(-1, "last"), (1, "mean")])
    other = FeatureExtractor.from_model(ext.model, ext.tokenizer, "tiny-opt", layer=1, pooling="mean")
    torch.testing.assert_close(last, ext(texts))
    torch.testing.assert_close(mean, other(texts))
    assert not torch.allclose(last, mean)


def test_rejection_reads_a_view_of_its_own_from_the_routing_forward_pass(tmp_path):
    ext = extractor()
    texts = family(colour_q, 40, 1) + family(title_q, 40, 1)
    labels = ["colour"] * 40 + ["title"] * 40
    switch = SwitchNetwork(ext, epochs=100, reject=True, reject_layer=1, reject_pooling="mean", reject_metric="cosine",
                           reject_quantile=1.0, margin=0.3).fit(texts, labels)
    assert switch.views == ((-1, "last"), (1, "mean"))
    distinct = sorted({t: i for i, t in enumerate(texts)}.values())
    expected = torch.nn.functional.normalize(ext.features_at([texts[i] for i in distinct], [(1, "mean")])[0], dim=1)
    torch.testing.assert_close(switch.rejection.views[0].bank, expected)
    queries = family(colour_q, 20, 7) + family(title_q, 20, 7) + OUT_OF_FAMILY
    calls = []
    hook = ext.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        routes = switch.predict(queries)
    finally:
        hook.remove()
    assert len(calls) == 1  # both views from one forward pass (one batch)
    # the rejection decision is the cosine nearest-neighbour rule in that view
    nearest = (1 - expected_queries(ext, queries) @ expected.T).clamp(min=0).min(1).values
    assert [label is None for label, _ in routes] == (nearest > switch.rejection.views[0].threshold).tolist()
    switch.save(tmp_path / "sw")
    meta = json.loads((tmp_path / "sw/switch.json").read_text())
    assert (meta["reject_layer"], meta["reject_pooling"], meta["reject_metric"]) == (1, "mean", "cosine")
    loaded = SwitchNetwork.load(tmp_path / "sw", extractor=ext)
    assert loaded.views == switch.views and loaded.predict(queries) == routes


def expected_queries(ext, queries):
    return torch.nn.functional.normalize(ext.features_at([switch_text(q) for q in queries], [(1, "mean")])[0], dim=1)


def test_bad_rejection_settings_are_one_line_errors():
    with pytest.raises(SwitchError, match="reject_metric"):
        SwitchNetwork(extractor(), reject_metric="manhattan")
    with pytest.raises(SwitchError, match="reject_pooling"):
        SwitchNetwork(extractor(), reject_pooling="max")


def test_a_switch_saved_before_rejection_views_existed_loads_and_rejects_as_it_did(tmp_path):
    import hashlib

    from safetensors.torch import load_file, save_file

    switch = fitted()
    switch.save(tmp_path / "sw")
    weights, meta_path = tmp_path / "sw/switch.safetensors", tmp_path / "sw/switch.json"
    # the files as the previous format wrote them: no rejection view, no rejection tensors
    save_file({k: v for k, v in load_file(str(weights)).items() if not k.startswith("reject_")}, str(weights))
    meta = {k: v for k, v in json.loads(meta_path.read_text()).items() if k not in ("reject_layer", "reject_pooling",
                                                                                   "reject_metric")}
    meta["checksums"]["switch.safetensors"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    old = SwitchNetwork.load(tmp_path / "sw")
    queries = family(colour_q, 20, 3) + family(title_q, 20, 3) + OUT_OF_FAMILY
    assert old.views == switch.views and old.reject_metric == "euclidean"
    assert old.predict(queries) == switch.predict(queries)
    assert any(label is None for label, _ in old.predict(OUT_OF_FAMILY))


def test_calibrated_rejection_gives_each_retained_instruction_its_own_radius(tmp_path):
    ext = extractor()
    colour, title = family(colour_q, 60, 1), family(title_q, 60, 1)
    switch = SwitchNetwork(ext, epochs=100, reject=True, reject_layer=1, reject_pooling="mean", reject_metric="cosine",
                           reject_quantile=0.9, margin=0.2)
    # calibration: each non-retained instruction's cosine distance to its task's nearest retained one, and which
    calibration = {"colour": switch.calibration_distances(colour[:16], colour[16:]),
                   "title": switch.calibration_distances(title[:16], title[16:])}
    retained = {"colour": colour[:16], "title": title[:16]}
    for name, texts in (("colour", colour), ("title", title)):
        bank, others = expected_queries(ext, texts[:16]), expected_queries(ext, texts[16:])
        nearest = (1 - others @ bank.T).clamp(min=0).min(1)
        torch.testing.assert_close(torch.tensor([d for d, _ in calibration[name]]), nearest.values)
        assert [i for _, i in calibration[name]] == nearest.indices.tolist()
    switch.fit(colour[:16] + title[:16], ["colour"] * 16 + ["title"] * 16, calibration=calibration)
    # computed independently: per distinct retained instruction, the 0.9 quantile x 1.2 of the distances of the
    # calibration instructions nearest to it (float noise where none are)
    texts, radii = [], []
    for name in ("colour", "title"):
        for text in dict.fromkeys(retained[name]):
            mine = [d for d, i in calibration[name] if retained[name][i] == text]
            texts.append(text)
            radii.append(max(float(torch.quantile(torch.tensor(mine), 0.9)) * 1.2, 1e-5) if mine else 1e-5)
    by_text = dict(zip(texts, radii))
    distinct = sorted({t: n for n, t in enumerate(colour[:16] + title[:16])}.values())
    radii_found = switch.rejection.views[0].radii
    assert radii_found.tolist() == pytest.approx([by_text[(colour[:16] + title[:16])[n]] for n in distinct])
    assert len(set(radii_found.tolist())) > 2  # not one radius per task
    # a query is known when it lies within some retained instruction's radius
    queries = family(colour_q, 20, 7) + family(title_q, 20, 7) + OUT_OF_FAMILY
    inside = ((1 - expected_queries(ext, queries) @ expected_queries(ext, texts).T).clamp(min=0)
              <= torch.tensor(radii)[None, :]).any(1)
    routes = switch.predict(queries)
    assert [label is None for label, _ in routes] == (~inside).tolist()
    assert switch.fit_info["calibration_counts"] == {"colour": 44, "title": 44}
    switch.save(tmp_path / "sw")
    assert json.loads((tmp_path / "sw/switch.json").read_text())["calibrated"] is True
    loaded = SwitchNetwork.load(tmp_path / "sw", extractor=ext)
    assert torch.equal(loaded.rejection.views[0].radii, radii_found) and loaded.predict(queries) == routes


def test_a_task_without_calibration_keeps_the_leave_one_out_radius():
    ext = extractor()
    colour, title = family(colour_q, 40, 1), family(title_q, 40, 1)
    switch = SwitchNetwork(ext, epochs=50, reject=True, reject_metric="cosine", reject_quantile=1.0, margin=0.0)
    calibration = {"colour": switch.calibration_distances(colour[:16], colour[16:]), "title": []}
    switch.fit(colour[:16] + title[:16], ["colour"] * 16 + ["title"] * 16, calibration=calibration)
    title_rows = switch.bank_labels == 1
    view = switch.rejection.views[0]
    assert (view.radii[title_rows] == torch.tensor(view.threshold)).all()
    assert view.radii[~title_rows].max() == pytest.approx(max(d for d, _ in calibration["colour"]))


def test_calibrated_rejection_refuses_what_it_cannot_honour():
    ext = extractor()
    texts, labels = family(colour_q, 8, 1) + family(title_q, 8, 1), ["colour"] * 8 + ["title"] * 8
    with pytest.raises(SwitchError, match="cosine"):  # standardised distances move as tasks are added
        SwitchNetwork(ext).calibration_distances(texts[:4], texts[4:8])
    with pytest.raises(SwitchError, match="cosine"):
        SwitchNetwork(ext, epochs=5).fit(texts, labels, calibration={"colour": [(0.1, 0)]})
    with pytest.raises(SwitchError, match="not fitted on: poems"):
        SwitchNetwork(ext, epochs=5, reject_metric="cosine").fit(texts, labels, calibration={"poems": [(0.1, 0)]})
    with pytest.raises(SwitchError, match="names retained instruction 8, but it has 8"):
        SwitchNetwork(ext, epochs=5, reject_metric="cosine").fit(texts, labels, calibration={"colour": [(0.1, 8)]})


def test_further_rejection_views_each_get_their_radii_and_a_query_must_be_known_in_every_view(tmp_path):
    """`reject_also`: the distances, the radii and the rejection in each view, computed independently."""
    ext = extractor()
    colour, title = family(colour_q, 60, 1), family(title_q, 60, 1)
    views = [(1, "mean"), (2, "last")]
    switch = SwitchNetwork(ext, epochs=100, reject=True, reject_layer=1, reject_pooling="mean", reject_metric="cosine",
                           reject_also=[[2, "last"]], reject_quantile=0.9, margin=0.2)
    assert switch.rejection_views == views
    retained = {"colour": colour[:16], "title": title[:16]}
    calibration = {"colour": switch.calibration_distances_by_view(colour[:16], colour[16:]),
                   "title": switch.calibration_distances_by_view(title[:16], title[16:])}
    assert calibration["colour"][0] == switch.calibration_distances(colour[:16], colour[16:])

    def unit(texts, view):
        return torch.nn.functional.normalize(ext.features_at(texts, [view])[0], dim=1)

    for name, texts in (("colour", colour), ("title", title)):
        for k, view in enumerate(views):
            nearest = (1 - unit(texts[16:], view) @ unit(texts[:16], view).T).clamp(min=0).min(1)
            torch.testing.assert_close(torch.tensor([d for d, _ in calibration[name][k]]), nearest.values)
            assert [i for _, i in calibration[name][k]] == nearest.indices.tolist()
    switch.fit(colour[:16] + title[:16], ["colour"] * 16 + ["title"] * 16, calibration=calibration)
    shown = colour[:16] + title[:16]
    texts = [shown[n] for n in sorted({t: n for n, t in enumerate(shown)}.values())]  # the bank's rows
    queries = family(colour_q, 20, 7) + family(title_q, 20, 7) + OUT_OF_FAMILY
    inside = []
    for k, (view, radii) in enumerate(zip(views, [v.radii for v in switch.rejection.views])):
        expected = []
        for text in texts:
            name = "colour" if text in retained["colour"] else "title"
            mine = [d for d, i in calibration[name][k] if retained[name][i] == text]
            expected.append(max(float(torch.quantile(torch.tensor(mine), 0.9)) * 1.2, 1e-5) if mine else 1e-5)
        assert radii.tolist() == pytest.approx(expected)
        inside.append(((1 - unit(queries, view) @ unit(texts, view).T).clamp(min=0) <= torch.tensor(expected)[None]).any(1))
    assert not torch.equal(inside[0], inside[1])  # the views disagree on some query: the rule below is tested
    routes = switch.predict(queries)
    assert [label is None for label, _ in routes] == (~(inside[0] & inside[1])).tolist()
    switch.save(tmp_path / "sw")
    loaded = SwitchNetwork.load(tmp_path / "sw", extractor=ext)
    assert loaded.rejection_views == views and torch.equal(loaded.rejection.views[1].radii, switch.rejection.views[1].radii)
    assert loaded.predict(queries) == routes


def test_further_rejection_views_refuse_what_they_cannot_honour():
    ext = extractor()
    texts, labels = family(colour_q, 8, 1) + family(title_q, 8, 1), ["colour"] * 8 + ["title"] * 8
    with pytest.raises(SwitchError, match="reject_also.*cosine"):
        SwitchNetwork(ext, reject_also=[[2, "last"]])
    with pytest.raises(SwitchError, match=r"\[layer, pooling\].*got \[2, 'max'\]"):
        SwitchNetwork(ext, reject_metric="cosine", reject_also=[[2, "max"]])
    switch = SwitchNetwork(ext, epochs=5, reject_metric="cosine", reject_also=[[2, "last"]])
    with pytest.raises(SwitchError, match="one list of \\(distance, index\\) pairs per rejection view \\(2\\)"):
        switch.fit(texts, labels, calibration={"colour": [(0.1, 0), (0.2, 1)]})


def test_the_run_config_and_the_switch_share_their_defaults():
    """One place (switch.defaults): SwitchNetwork's arguments and the config's `switch:` section agree."""
    import dataclasses
    import inspect

    from llava_cit.config import SwitchSettings
    from switch import SWITCH_DEFAULTS
    from switch.classifier import train_classifier

    settings, arguments = SwitchSettings(), inspect.signature(SwitchNetwork).parameters
    named = {"reject_margin": "margin"}  # the config's name -> SwitchNetwork's
    for field in dataclasses.fields(SWITCH_DEFAULTS):
        default = getattr(SWITCH_DEFAULTS, field.name)
        assert getattr(settings, field.name) == default
        assert arguments[named.get(field.name, field.name)].default == default
    assert (SWITCH_DEFAULTS.reject, SWITCH_DEFAULTS.epochs) == (False, 200)  # as the README documents
    assert inspect.signature(train_classifier).parameters["epochs"].default == SWITCH_DEFAULTS.epochs
    assert not SwitchNetwork(extractor()).reject


def test_rejection_views_are_one_list_view_0_first():
    switch = SwitchNetwork(extractor(), reject_metric="cosine", reject_layer=1, reject_also=[[2, "mean"], [0, "last"]])
    assert switch.rejection_views == [(1, "last"), (2, "mean"), (0, "last")] == switch.rejection.places
    assert switch.views == ((-1, "last"), (1, "last")) and switch.reject_also == [(2, "mean"), (0, "last")]


def test_a_key_routers_keys_are_what_eprojs_pull_loss_learns():
    """EProj (arXiv 2311.16206, the authors' code) learns each task's key by minimising sum(1 - cos(query, key)) over
    the task's queries; the key router's key is that loss's minimiser (its direction), found here by gradient descent."""
    ext = extractor()
    texts = family(colour_q, 30, 1) + family(title_q, 30, 1)
    labels = ["colour"] * 30 + ["title"] * 30
    switch = SwitchNetwork(ext, epochs=5, router="key").fit(texts, labels)
    queries = torch.nn.functional.normalize(switch.bank, dim=1)
    for k in range(len(switch.labels)):
        own = queries[switch.bank_labels == k]
        key = torch.randn(own.shape[1], requires_grad=True)
        optimizer = torch.optim.Adam([key], lr=0.05)
        for _ in range(500):
            optimizer.zero_grad()
            loss = (1 - own @ torch.nn.functional.normalize(key, dim=0)).sum()
            loss.backward()
            optimizer.step()
        learned = torch.nn.functional.normalize(key.detach(), dim=0)
        assert torch.dot(learned, torch.nn.functional.normalize(switch.keys[k], dim=0)) > 0.999
