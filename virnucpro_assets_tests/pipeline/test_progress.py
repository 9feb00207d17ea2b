"""GPU steps log their progress to the run log: sequences done, tokens/s and the time left."""

from virnucpro_assets.pipeline.assets.embeddings import progress_logger, progress_message


def test_progress_message_says_how_far_how_fast_and_how_long():
    message = progress_message("esm2_embeddings [s|000] on cuda:0", 12_000, 48_000, 951_000, 10.0)
    assert message == "esm2_embeddings [s|000] on cuda:0: 12,000 of 48,000 distinct sequences (25%), 95,100 tokens/s, about 30 s left"
    assert progress_message("x", 1, 3_601, 10, 1.0).endswith("about 1 h 0 min left")
    assert progress_message("x", 0, 10, 0, 0.0).endswith("0 tokens/s, time left unknown")


def test_the_logger_measures_from_its_creation():
    now = [100.0]
    lines = []

    class Log:
        def info(self, text):
            lines.append(text)

    report = progress_logger(Log(), "dnabert_embeddings [s|001] on fake:1", clock=lambda: now[0])
    now[0] = 120.0
    report(500, 1_000, 40_000)
    assert lines == ["dnabert_embeddings [s|001] on fake:1: 500 of 1,000 distinct sequences (50%), 2,000 tokens/s, about 20 s left"]
