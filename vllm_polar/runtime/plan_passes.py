"""The plan's passes over a batch's entries, compiled (numba, which vLLM itself depends on).

Each pass is one loop over the (program, step) entries, their rows or their tokens, where the
array form took a dozen numpy calls of a few microseconds each and as many sweeps of the
entries (:mod:`vllm_polar.runtime.plan` says what the arrays mean).  Arrays are int64 but the
masks and the program table's steps (int32); every function returns new arrays (``marks``
aside: scratch, left as it came).  Compiled when this module is imported (:func:`warm_up`) and
cached on disk, so that the engine's first plans do not wait on the compiler.
"""

from __future__ import annotations

import numba
import numpy as np

compiled = numba.njit(cache=True, nogil=True)


@compiled
def gather_batch(row_ids, offsets, lengths, steps, marks):
    """The batch's distinct programs and their entries, from the table's arrays.

    ``row_ids`` (R,): each row's program id in the table; ``offsets``, ``lengths``: where each
    table program's steps lie in ``steps`` (3, n): layer, slot, by-layer key; ``marks``: zeros,
    one per table program (left zeroed).  Returns ``ids`` (P,) the distinct programs in order
    of first appearance, ``of_row`` (R,) each row's position in ``ids``, ``sizes`` (P,) their
    steps, and per entry (program-major, steps in order) ``program``, ``step``, ``layer``,
    ``slot``, ``key``.
    """
    num_rows = len(row_ids)
    ids = np.empty(num_rows, np.int64)
    of_row = np.empty(num_rows, np.int64)
    count = 0
    total = 0
    for row in range(num_rows):
        table_id = row_ids[row]
        if marks[table_id] == 0:
            ids[count] = table_id
            count += 1
            marks[table_id] = count
            total += lengths[table_id]
        of_row[row] = marks[table_id] - 1
    ids = ids[:count]
    sizes = lengths[ids]
    program = np.empty(total, np.int64)
    step = np.empty(total, np.int64)
    layer = np.empty(total, np.int64)
    slot = np.empty(total, np.int64)
    key = np.empty(total, np.int64)
    entry = 0
    for p in range(count):
        marks[ids[p]] = 0
        first = offsets[ids[p]]
        for k in range(sizes[p]):
            program[entry] = p
            step[entry] = k
            layer[entry] = steps[0, first + k]
            slot[entry] = steps[1, first + k]
            key[entry] = steps[2, first + k]
            entry += 1
    return ids, of_row, sizes, program, step, layer, slot, key


@compiled
def by_layer_keys(layer, sizes, num_layers, num_slots):
    """(n,) by-layer round key of every step of programs laid end to end (``sizes`` steps
    each; :mod:`vllm_polar.runtime.plan`): (the highest layer reached, the loops back since
    it was reached, the layer), as one integer.  A loop back is a step whose layer is at most
    the previous step's."""
    keys = np.empty(len(layer), np.int64)
    i = 0
    for size in sizes:
        high, loops, loops_when_reached = -1, 0, 0
        for k in range(size):
            if k > 0 and layer[i] <= layer[i - 1]:
                loops += 1
            if layer[i] > high:
                high, loops_when_reached = layer[i], loops
            since = loops - loops_when_reached
            keys[i] = (high * (num_slots + 1) + since) * num_layers + layer[i]
            i += 1
    return keys


@compiled
def dense_rank(keys):
    """(rank of each key among the distinct keys, the distinct keys ascending), keys >= 0."""
    rank, distinct, _, _ = ranked_order(keys)
    return rank, distinct


@compiled
def counting_order(ids, num_ids):
    """Stable order of ``ids`` (0 <= id < ``num_ids``), and where each id's run begins
    (``num_ids + 1``)."""
    start = np.zeros(num_ids + 1, np.int64)
    for i in ids:
        start[i + 1] += 1
    for i in range(num_ids):
        start[i + 1] += start[i]
    place = start[:-1].copy()
    order = np.empty(len(ids), np.int64)
    for j in range(len(ids)):
        order[place[ids[j]]] = j
        place[ids[j]] += 1
    return order, start


@compiled
def ranked_order(keys):
    """The dense rank of each key (>= 0) among the distinct keys, the distinct keys ascending,
    the keys' stable order by rank, and where each rank's run begins in it (distinct + 1): one
    counting sort through a table of every key where the key range is small, else a sort."""
    size = keys.max() + 1 if len(keys) else 1
    if size > 32 * len(keys) + (1 << 16):
        order = np.argsort(keys, kind="mergesort")
        rank = np.empty(len(keys), np.int64)
        distinct = np.empty(len(keys), np.int64)
        start = np.empty(len(keys) + 1, np.int64)
        count = 0
        for j in range(len(order)):
            if j == 0 or keys[order[j]] != keys[order[j - 1]]:
                distinct[count], start[count] = keys[order[j]], j
                count += 1
            rank[order[j]] = count - 1
        start[count] = len(keys)
        return rank, distinct[:count], order, start[: count + 1]
    count = np.zeros(size, np.int64)
    for key in keys:
        count[key] += 1
    num_distinct = 0
    for key in range(size):
        if count[key]:
            num_distinct += 1
    distinct = np.empty(num_distinct, np.int64)
    start = np.empty(num_distinct + 1, np.int64)
    rank_of_key = np.empty(size, np.int64)
    place = np.empty(size, np.int64)
    r, position = 0, 0
    for key in range(size):
        if count[key]:
            distinct[r], start[r], rank_of_key[key], place[key] = key, position, r, position
            position += count[key]
            r += 1
    start[num_distinct] = position
    rank = np.empty(len(keys), np.int64)
    order = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        key = keys[i]
        rank[i] = rank_of_key[key]
        order[place[key]] = i
        place[key] += 1
    return rank, distinct, order, start


@compiled
def rank_rounds(round_key, layer, slot, num_slots, num_programs, layer_per_round):
    """One order's rounds from each entry's round key: ``round_of``, ``group_of`` (groups are
    (round, layer) in round order), ``group_round``, ``group_layer``, ``by_group`` (entries
    in group order), ``call_slot`` (each round's first entry's slot) and ``everyone`` (the
    round holds every program, all on one slot).  ``layer_per_round``: the key gives each
    round one layer, so the groups are the rounds."""
    if layer_per_round:
        round_of, rounds, by_group, group_start = ranked_order(round_key)
        group_of = round_of
        group_round = np.arange(len(rounds))
        group_layer = np.empty(len(rounds), np.int64)
        for g in range(len(rounds)):
            group_layer[g] = layer[by_group[group_start[g]]]
    else:
        round_of, rounds = dense_rank(round_key)
        group_of, groups, by_group, group_start = ranked_order(round_of * num_slots + layer)
        group_round = groups // num_slots
        group_layer = groups % num_slots
    num_rounds = len(rounds)
    call_slot = np.empty(num_rounds, np.int64)
    for g in range(len(group_round)):
        if g == 0 or group_round[g] != group_round[g - 1]:
            call_slot[group_round[g]] = slot[by_group[group_start[g]]]
    size = np.zeros(num_rounds, np.int64)
    everyone = np.ones(num_rounds, np.bool_)
    for i in range(len(round_of)):
        r = round_of[i]
        size[r] += 1
        if slot[i] != call_slot[r]:
            everyone[r] = False
    for r in range(num_rounds):
        everyone[r] = everyone[r] and size[r] == num_programs
    return round_of, group_of, group_round, group_layer, by_group, call_slot, everyone


@compiled
def expand(programs, of_row, num_programs, query_start_loc):
    """Entries (``programs``: each one's program) expanded to batch rows (every row of the
    entry's program, in row order) and tokens (every token of each row): ``rows``, ``tokens``,
    ``row_start`` (entries + 1: where each entry's rows begin), ``token_start`` (rows + 1:
    where each row's tokens begin)."""
    if len(of_row) == num_programs:  # every row its own program: one row per entry
        row_of = np.empty(num_programs, np.int64)
        for row in range(len(of_row)):
            row_of[of_row[row]] = row
        rows = np.empty(len(programs), np.int64)
        for i in range(len(programs)):
            rows[i] = row_of[programs[i]]
        row_start = np.arange(len(programs) + 1)
    else:
        rows, row_start = rows_of_entries(programs, of_row, num_programs)
    if query_start_loc[-1] == len(of_row):  # one token per row (decode): row i's is token i
        return rows, rows, row_start, np.arange(len(rows) + 1)
    token_start = np.empty(len(rows) + 1, np.int64)
    token_start[0] = 0
    for j in range(len(rows)):
        token_start[j + 1] = (
            token_start[j] + query_start_loc[rows[j] + 1] - query_start_loc[rows[j]]
        )
    tokens = np.empty(token_start[-1], np.int64)
    for j in range(len(rows)):
        first = query_start_loc[rows[j]]
        for t in range(token_start[j + 1] - token_start[j]):
            tokens[token_start[j] + t] = first + t
    return rows, tokens, row_start, token_start


@compiled
def rows_of_entries(programs, of_row, num_programs):
    """Every row of each entry's program, in row order, entry after entry, and where each
    entry's rows begin (entries + 1)."""
    row_order, first_row = counting_order(of_row, num_programs)
    row_start = np.empty(len(programs) + 1, np.int64)
    row_start[0] = 0
    for i in range(len(programs)):
        p = programs[i]
        row_start[i + 1] = row_start[i] + first_row[p + 1] - first_row[p]
    rows = np.empty(row_start[-1], np.int64)
    for i in range(len(programs)):
        first = first_row[programs[i]]
        for j in range(row_start[i], row_start[i + 1]):
            rows[j] = row_order[first + j - row_start[i]]
    return rows, row_start


@compiled
def round_entries(by_group, round_of, group_of, program, slot, uniform):
    """The entries, in group order, of the rounds that are not ``uniform``, as (4, n): each
    one's round, group, program and slot (read here once, so that the passes after this one
    read them in order)."""
    kept = np.empty((4, len(by_group)), np.int64)
    count = 0
    for e in by_group:
        r = round_of[e]
        if not uniform[r]:
            kept[0, count], kept[1, count] = r, group_of[e]
            kept[2, count], kept[3, count] = program[e], slot[e]
            count += 1
    return kept[:, :count]


@compiled
def spans(owners, num_owners, start):
    """(2, ``num_owners``): where each owner's run of entries begins and ends in ``start`` (an
    offset per entry and one past the last), for entries whose ``owners`` (a group or a
    round each) ascend; an owner without entries gets an empty span."""
    bounds = np.empty((2, num_owners), np.int64)
    j = 0
    for i in range(num_owners):
        bounds[0, i] = start[j]
        while j < len(owners) and owners[j] == i:
            j += 1
        bounds[1, i] = start[j]
    return bounds


@compiled
def per_row(values, row_start):
    """Each entry's value (``values``) for each row it expanded to (``row_start``: where each
    entry's rows begin)."""
    out = np.empty(row_start[len(values)], np.int64)
    for i in range(len(values)):
        for j in range(row_start[i], row_start[i + 1]):
            out[j] = values[i]
    return out


@compiled
def call_starts(call_rows, partial, token_start):
    """Per call over part of the batch (the rounds ``partial`` marks; its rows
    ``call_rows[0, r]:call_rows[1, r]``), the offset of each of its rows' tokens within the
    call and its end, laid end to end: (values, (2, rounds) where each call's lie)."""
    bounds = np.zeros((2, len(partial)), np.int64)
    total = 0
    for r in range(len(partial)):
        if partial[r]:
            bounds[0, r] = total
            total += call_rows[1, r] - call_rows[0, r] + 1
            bounds[1, r] = total
    values = np.empty(total, np.int64)
    for r in range(len(partial)):
        first = call_rows[0, r]
        for j in range(bounds[1, r] - bounds[0, r]):
            values[bounds[0, r] + j] = token_start[first + j] - token_start[first]
    return values, bounds


@compiled
def by_slot(slots, items, num_slots):
    """Positions of ``slots`` listed slot after slot (stable), ``items`` in that order, and
    where each slot's run begins (``num_slots + 1``)."""
    order, start = counting_order(slots, num_slots)
    listed = np.empty(len(order), np.int64)
    for j in range(len(order)):
        listed[j] = items[order[j]]
    return order, listed, start


@compiled
def slot_runs(row_start, token_start):
    """(k, 5): (slot, its rows' run, its tokens' run) for the k slots with rows, from where
    each slot's rows and tokens begin (``num_slots + 1`` each)."""
    count = 0
    for s in range(len(row_start) - 1):
        if row_start[s + 1] > row_start[s]:
            count += 1
    runs = np.empty((count, 5), np.int64)
    k = 0
    for s in range(len(row_start) - 1):
        if row_start[s + 1] > row_start[s]:
            runs[k, 0] = s
            runs[k, 1], runs[k, 2] = row_start[s], row_start[s + 1]
            runs[k, 3], runs[k, 4] = token_start[s], token_start[s + 1]
            k += 1
    return runs


def warm_up() -> None:
    """Compile (or load from the disk cache) every pass for the array types the plan gives
    them, so that no forward waits on the compiler."""
    ids = np.zeros(2, np.int64)
    steps = np.zeros((3, 2), np.int32)
    _, of_row, _, program, _, layer, slot, key = gather_batch(ids, ids, ids + 1, steps, ids.copy())
    columns = rank_rounds(key, layer, slot, 2, 1, False)
    rank_rounds(key, layer, slot, 2, 1, True)
    uniform = np.zeros(1, np.bool_)
    kept = round_entries(columns[4], columns[0], columns[1], program, slot, uniform)
    query_start_loc = np.arange(3, dtype=np.int64)
    rows, _, row_start, token_start = expand(kept[2], of_row, 1, query_start_loc)
    spans(kept[1], 1, row_start)
    call_starts(spans(kept[0], 1, row_start), columns[-1], token_start)
    _, _, run = by_slot(per_row(kept[3], row_start), rows, 2)
    slot_runs(run, run)
    dense_rank(np.array([1 << 40]))
    by_layer_keys(ids, ids, 2, 2)


warm_up()
