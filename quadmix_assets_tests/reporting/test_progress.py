from quadmix_assets.reporting.progress import Progress


def test_progress_lines_are_rate_limited_and_give_rate_and_eta():
    now = [0.0]
    lines: list[str] = []
    p = Progress("teacher", 100, every_s=10, log=lines.append, clock=lambda: now[0])
    for _ in range(9):  # 9 batches of 5 documents, one second each: one line at t = 10 s
        now[0] += 1.0
        p.update(5)
    assert lines == []
    now[0] += 1.0
    p.update(5)
    assert lines == ["teacher: 50/100 documents, 5.0 documents/s, ETA 10s (10s so far)"]
    now[0] += 10.0
    p.update(50)
    assert lines[-1] == "teacher: 100/100 documents, 5.0 documents/s (20s so far)"
    assert len(lines) == 2


def test_quadmix_run_prints_progress_lines(capsys):
    import logging

    from quadmix_assets.cli import show_progress_lines
    from quadmix_assets.reporting.progress import LOGGER_NAME

    logger = logging.getLogger(LOGGER_NAME)
    before = list(logger.handlers)
    try:
        show_progress_lines()
        show_progress_lines()  # once only
        Progress("proxies", 2, "proxies").update(2)
    finally:
        for h in logger.handlers[len(before):]:
            logger.removeHandler(h)
    out = capsys.readouterr().out
    assert out.count("proxies: 2/2 proxies") == 1
