"""The thread policy: the cores other processes leave free, measured, and re-chosen while they come and go."""

import subprocess
import sys
import time

import torch

from vlfuse import threads
from vlfuse.threads import ThreadWatch, choose_threads, others_load, read_cpu, threads_for


def test_threads_for_counts_a_core_taken_past_a_third_of_it():
    assert threads_for(0.0, 2) == 2
    assert threads_for(0.2, 2) == 2  # background noise keeps both cores
    assert threads_for(0.5, 2) == 1  # a neighbour squeezed by our own threads still takes its core
    assert threads_for(1.0, 2) == 1
    assert threads_for(2.0, 2) == 1  # at least one
    assert threads_for(1.0, 8) == 7


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def test_a_spinning_neighbour_is_measured_and_leaves_one_core_fewer():
    cores = threads.available_cores()
    neighbour = spinner()
    try:
        time.sleep(0.3)  # let it start
        before = read_cpu()
        time.sleep(0.5)
        load = others_load(before, read_cpu())
        chosen, why = choose_threads()
    finally:
        neighbour.kill()
    assert 0.6 <= load <= cores  # one process spinning: about one core
    assert chosen == max(1, cores - 1) and "other processes used" in why
    assert choose_threads(3) == (3, "set to 3")  # train.threads wins


def test_watch_lowers_the_threads_when_a_neighbour_starts_and_raises_them_when_it_stops():
    cores = threads.available_cores()
    initial = torch.get_num_threads()
    try:
        watch = ThreadWatch(cores, every=0.3)
        neighbour = spinner()
        try:
            time.sleep(0.4)
            assert watch.check() == max(1, cores - 1) == torch.get_num_threads()
        finally:
            neighbour.kill()
            neighbour.wait()
        time.sleep(0.4)
        watch.check()  # the window still holds some of the neighbour's time
        time.sleep(0.4)
        assert watch.check() == cores == torch.get_num_threads()
        assert [t for _, t, _ in watch.changes][-2:] == ([cores - 1, cores] if cores > 1 else [])
    finally:
        torch.set_num_threads(initial)
