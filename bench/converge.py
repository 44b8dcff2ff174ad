"""Convergence simulation (issue 13): 60 days of the hybrid loop with a steward of fixed daily capacity.

The legacy source starts with the plans and portfolios it knows. Two monthly 规模明细 files (days 1 and 31) bring,
besides the known keys written the dirty ways real files write them, genuinely new keys (which the legacy source
catches up on after a lag of 2–20 days, or never for a tenth of them), genuine typos of existing keys (a stray,
doubled, swapped, dropped or wrong character, on a row that otherwise carries the right plan and names) and junk keys
(a key with spaces, quotes or a sentence in it). Every day: the legacy source catches up, the preload syncs, the
day's fact file (if any) loads, and the steward works the review queue.

The steward decides only from what the admin shows (the queue's 「疑似 … 的笔误」 column and the change form's
candidates with their evidence, read through the same selectors the admin uses), never from the simulation's truth:

1. rows with a typo suggestion, best score first: merge into the suggested key when the score is at least
   ``--merge-score`` and the evidence shows a name match (a name similarity of at least 0.8);
2. rows pending for ``--wait-days`` days (the source did not bring them): promote them (required fields present) —
   a key nobody can explain after two weeks is taken as genuine.

One decision costs one unit of the daily capacity. Printed per day: the auto-derived share of each table, pending
rows and the oldest pending age (days). At the end: the typos the steward worked, how many were merged from a
suggestion, wrong merges, and junk keys that became reference rows. Targets (issue 13): share < 2% by day 60,
≥ 90% of worked typos merged from a suggestion, no wrong merge, no junk key as a reference row.

Usage: .venv/bin/python bench/converge.py [--days 60] [--plans 3000] [--portfolios 9000] [--capacity 30]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENCH_DB = os.environ.get("REFGOV_BENCH_DB", "refgov_bench_converge")
HUB, ENT = "converge_hub", "converge_enterprise"
os.environ["DJANGO_SETTINGS_MODULE"] = "refgov.settings.dev"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}"

JUNK = ["{key} 备注", "'{key}'", '"{key}"', "见附件", "{key}；{key}", "计划号待补充", "{key}\t(旧)", "请参考上月"]
BUSINESS = ["企年投资", "企年受托"]
# Stray characters of the typos; not "F": a leading F of a portfolio code is stripped by the load (strip_prefix).
STRAYS = "19"
# The shapes of the legacy keys (pipeline.demo.legacy plan_code / portfolio_code), as an operator would configure them.
KEY_PATTERNS = "key_patterns: {年金计划: '^[PZ][0-9]{4,6}$', 组合计划: '^QTAN[0-9]{4,7}$'}"


@dataclass
class Truth:
    """What the simulation knows and the steward does not."""

    new_plans: dict[str, tuple[str, str]] = field(default_factory=dict)  # key → (name, customer)
    new_portfolios: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # key → (plan, name, kind)
    arrival: dict[str, int] = field(default_factory=dict)  # new key → day the legacy source has it (absent: never)
    typos: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, typo) → right key
    junk: set[str] = field(default_factory=set)


class World:
    def __init__(self, args: argparse.Namespace) -> None:
        from pipeline.demo.legacy import LegacyDataset

        self.args = args
        self.rnd = random.Random(args.seed)
        self.legacy = LegacyDataset(plans=args.plans, portfolios=args.portfolios)
        self.plans = {r[0]: (r[1], r[5]) for r in self.legacy.plan_rows()}  # key → (计划简称, 客户名称)
        self.portfolios = {r[0]: (r[1], r[2], r[6]) for r in self.legacy.portfolio_rows()}  # key → (plan, name, kind)
        self.truth = Truth()
        self.never: set[str] = set()
        self._new_keys()

    def _new_keys(self) -> None:
        from pipeline.demo.legacy import CITIES, COMPANIES, SUFFIXES, plan_code, portfolio_code

        a = self.args
        for j in range(a.new_plans):
            key = plan_code(a.plans + 1 + j)
            company = f"{self.rnd.choice(CITIES[1:])}{self.rnd.choice(COMPANIES)}{self.rnd.choice(SUFFIXES)}{j}"
            self.truth.new_plans[key] = (f"{company[:8]}年金计划", company)
        plans = list(self.truth.new_plans)
        for j in range(a.new_portfolios):
            key = portfolio_code(a.portfolios + 1 + j)
            plan = plans[j % len(plans)] if j % 3 else self.rnd.choice(list(self.plans))  # some under old plans
            kind = self.rnd.choice(["固定收益型", "含权益型"])
            self.truth.new_portfolios[key] = (plan, f"{plan}{kind}组合{a.portfolios + 1 + j}", kind)

    def month_file(self, path: Path, month: str, first_day: int, part: int) -> int:
        """One 规模明细 CSV: the known portfolios, half of the new keys (both halves in the second month), typos
        and junk. The new keys of this file get their legacy arrival day."""
        from pipeline.demo.facts import SCALE_COLUMNS, dirty, typo
        from pipeline.demo.legacy import branches

        rnd, a = self.rnd, self.args
        new = list(self.truth.new_portfolios)
        new = new[: len(new) // 2] if part == 0 else new
        for key in new:
            for k in (key, self.truth.new_portfolios[key][0]):
                if k in self.truth.arrival or k in self.never or k in self.plans:
                    continue
                if rnd.random() < 0.1:
                    self.never.add(k)  # the legacy source never brings it: the steward must promote it
                else:
                    self.truth.arrival[k] = first_day + rnd.randint(2, 20)
        orgs = branches()
        rows = []

        def row(plan: str, portfolio: str, business: str) -> list[object]:
            plan_name, customer = self.plans.get(plan) or self.truth.new_plans[plan]
            _, name, kind = self.portfolios.get(portfolio) or self.truth.new_portfolios[portfolio]
            opening = round(rnd.uniform(1e5, 5e8), 2)
            org = orgs[rnd.randrange(len(orgs))][1]
            return [
                month,
                business,
                "单一计划" if plan.startswith("P") else "集合计划",
                plan,
                plan_name,
                kind,
                portfolio,
                name,
                customer,
                opening,
                round(opening * 1.01, 2),
                0,
                0,
                0,
                0,
                round(opening * 0.01, 2),
                0.01,
                0.12,
                org,
                "",
                "",
                "",
            ]

        for portfolio, (plan, _, _) in list(self.portfolios.items()) + [
            (k, v) for k, v in self.truth.new_portfolios.items() if k in new
        ]:
            for business in BUSINESS[: 1 + (int(portfolio[-1]) % 3 == 0)]:
                r = row(plan, portfolio, business)
                r[3] = dirty(plan, rnd, portfolio=False) if plan in self.plans else plan
                r[6] = dirty(portfolio, rnd, portfolio=True) if portfolio in self.portfolios else portfolio
                rows.append(r)
        known_plans, known_portfolios = list(self.plans), list(self.portfolios)
        made = 0
        while made < a.typos:
            table = "组合计划" if made % 3 else "年金计划"
            if table == "组合计划":
                right = rnd.choice(known_portfolios)
                plan = self.portfolios[right][0]
                wrong = typo(right, rnd, strays=STRAYS)
                if wrong in self.portfolios or wrong in self.truth.new_portfolios:
                    continue
                r = row(plan, right, BUSINESS[1])
                r[6] = wrong
            else:
                right = rnd.choice(known_plans)
                portfolio = next(k for k, v in self.portfolios.items() if v[0] == right)
                wrong = typo(right, rnd, strays=STRAYS)
                if wrong in self.plans or wrong in self.truth.new_plans:
                    continue
                r = row(right, portfolio, BUSINESS[1])
                r[3] = wrong
            self.truth.typos[(table, wrong)] = right
            rows.append(r)
            made += 1
        for j in range(a.junk):
            portfolio = rnd.choice(known_portfolios)
            plan = self.portfolios[portfolio][0]
            r = row(plan, portfolio, BUSINESS[1])
            spelled = JUNK[j % len(JUNK)].format(key=portfolio if j % 2 else plan)
            r[6 if j % 2 else 3] = spelled
            self.truth.junk.add(spelled)
            rows.append(r)
        rnd.shuffle(rows)
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(SCALE_COLUMNS)
            writer.writerows(rows)
        return len(rows)

    def arrivals(self, day: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        """Legacy rows of the new keys the source catches up on ``day``."""
        plans = [
            (key, name, name + "（全称）", "G01", "单一计划" if key.startswith("P") else "集合计划", customer)
            for key, (name, customer) in self.truth.new_plans.items()
            if self.truth.arrival.get(key) == day
        ]
        portfolios = [
            (key, plan, name, kind)
            for key, (plan, name, kind) in self.truth.new_portfolios.items()
            if self.truth.arrival.get(key) == day
        ]
        return plans, portfolios


@dataclass
class Steward:
    merged: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, key) → the key it was merged into
    promoted: set[tuple[str, str]] = field(default_factory=set)
    examined: dict[tuple[str, str], str] = field(default_factory=dict)  # not merged: the suggestion seen then
    refused: int = 0


def steward_day(
    user: object,
    capacity: int,
    day: int,
    first_seen: dict[tuple[str, str], int],
    steward: Steward,
    args: argparse.Namespace,
) -> int:
    """One day's work on the queue, from what the admin shows; returns the decisions made."""
    from pipeline.models import KeySuggestion
    from pipeline.selectors import best_suggestion
    from reference.registry import get_table
    from stewardship.merge import MergeRefused, merge
    from stewardship.promote import promote

    done = 0
    for table in ("年金计划", "组合计划"):
        model = get_table(table).model
        queue = (
            model.objects.filter(needs_review=True)
            .annotate(**best_suggestion(table=table))
            .filter(suggestion_score__isnull=False)
            .order_by("-suggestion_score")
        )
        for row in queue[: max(capacity - done, 0)]:
            best = KeySuggestion.objects.filter(table=table, key=row.pk, rank=1).first()  # the change form's panel
            if best is None or steward.examined.get((table, str(row.pk))) == best.candidate:
                continue
            names = (best.evidence or {}).get("names") or {}
            done += 1
            if best.score >= args.merge_score and max(names.values(), default=0) >= 0.8:
                try:
                    merge(table=table, wrong_key=str(row.pk), right_key=best.candidate, user=user)
                    steward.merged[(table, str(row.pk))] = best.candidate
                except MergeRefused:
                    steward.refused += 1
            else:
                steward.examined[(table, str(row.pk))] = best.candidate
    done += quarantine_day(user, capacity - done, steward, args)
    for table in ("年金计划", "组合计划"):
        model = get_table(table).model
        waiting = [
            str(k)
            for k in model.objects.filter(needs_review=True).order_by("derived_at").values_list("pk", flat=True)
            if day - first_seen.get((table, str(k)), day) >= args.wait_days
        ][: max(capacity - done, 0)]
        if waiting:
            result = promote(queryset=model.objects.filter(pk__in=waiting), user=user)
            steward.promoted.update((table, k) for k in waiting)
            steward.refused += result.refused
            done += len(waiting)
    return done


def quarantine_day(user: object, capacity: int, steward: Steward, args: argparse.Namespace) -> int:
    """隔离行 with a 「疑似笔误」 suggestion, best score first: 「按建议更正并重新提交」 when the score and a name match
    are convincing (as for the queue); one decision per bad key."""
    from pipeline.facts.quarantine import QuarantineError, correct_by_suggestions
    from pipeline.models import KeySuggestion, QuarantinedRow, QuarantineState
    from pipeline.selectors import best_quarantine_suggestion

    rows = (
        QuarantinedRow.objects.filter(state=QuarantineState.PENDING)
        .annotate(**best_quarantine_suggestion())
        .filter(suggestion_score__isnull=False)
        .order_by("-suggestion_score")
    )
    by_key: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        by_key.setdefault((row.quarantine_table, row.quarantine_key), []).append(row.pk)
    done = 0
    for (table, key), ids in by_key.items():
        if done >= capacity or (table, key) in steward.examined:
            continue
        best = KeySuggestion.objects.filter(table=table, key=key, rank=1).first()
        if best is None:
            continue
        done += 1
        names = (best.evidence or {}).get("names") or {}
        if best.score >= args.merge_score and max(names.values(), default=0) >= 0.8:
            try:
                correct_by_suggestions(ids=ids, user=user)
                steward.merged[(table, key)] = best.candidate
            except QuarantineError:
                steward.refused += 1
        else:
            steward.examined[(table, key)] = best.candidate
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--plans", type=int, default=3_000)
    parser.add_argument("--portfolios", type=int, default=9_000)
    parser.add_argument("--new-plans", type=int, default=150)
    parser.add_argument("--new-portfolios", type=int, default=600)
    parser.add_argument("--typos", type=int, default=24, help="per monthly file")
    parser.add_argument("--junk", type=int, default=8, help="per monthly file")
    parser.add_argument("--capacity", type=int, default=30, help="steward decisions per day")
    parser.add_argument("--merge-score", type=float, default=0.85)
    parser.add_argument("--wait-days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args()

    subprocess.run(
        f"dropdb -h 127.0.0.1 -U postgres --if-exists {BENCH_DB} && createdb -h 127.0.0.1 -U postgres {BENCH_DB}",
        shell=True,
        check=True,
    )
    work = Path(tempfile.mkdtemp(prefix="refgov-converge-"))
    config_dir = work / "config"
    shutil.copytree(ROOT / "config", config_dir)
    main_config = config_dir / "reference_management.yml"
    main_config.write_text(
        main_config.read_text(encoding="utf-8")
        .replace("database: annuity_hub", f"database: {HUB}")
        .replace("database: enterprise", f"database: {ENT}")
        .replace("key_patterns: {}", KEY_PATTERNS),
        encoding="utf-8",
    )
    os.environ["REFGOV_CONFIG_DIR"] = str(config_dir)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], check=True)

    import django

    django.setup()
    logging.getLogger("refgov").setLevel(logging.WARNING)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from pipeline.demo.legacy import PLAN_COLUMNS, PORTFOLIO_COLUMNS, bulk_load, create_legacy_databases
    from pipeline.facts.readers import FactFileError
    from pipeline.facts.service import FactLoadError, process_fact_file
    from pipeline.preload.service import run_preload
    from pipeline.sources.legacy_mysql import MySQLServer
    from reference.models import Source
    from reference.registry import get_table

    world = World(args)
    server = MySQLServer.from_settings()
    create_legacy_databases(server, world.legacy, hub_db=HUB, enterprise_db=ENT)
    user = get_user_model().objects.create_superuser("converge_steward", "steward@example.com", "x")
    steward = Steward()
    first_seen: dict[tuple[str, str], int] = {}
    started = time.perf_counter()
    print(f"legacy: {args.plans:,} plans, {args.portfolios:,} portfolios; steward capacity {args.capacity}/day")
    print("day | 年金计划 auto share | 组合计划 auto share | pending | oldest pending (days) | today")
    for day in range(1, args.days + 1):
        today = []
        plans, portfolios = world.arrivals(day)
        if plans:
            bulk_load(server, HUB, "年金计划", PLAN_COLUMNS[:6], plans)
        if portfolios:
            bulk_load(server, HUB, "组合计划", PORTFOLIO_COLUMNS[:3] + ["组合类型"], portfolios)
        if plans or portfolios:
            today.append(f"source +{len(plans)} plans +{len(portfolios)} portfolios")
        run_preload(server=server, full=day == 1)
        if day in (1, 31):
            month = "202501" if day == 1 else "202502"
            path = work / f"规模明细_{month}.csv"
            world.month_file(path, month, day, part=0 if day == 1 else 1)
            try:
                result = process_fact_file(domain="annuity_performance", path=path)
                today.append(f"file {month}: {result.batch.message}")
            except (FactFileError, FactLoadError) as exc:
                today.append(f"file {month} refused: {str(exc)[:200]}")
        for table in ("年金计划", "组合计划"):
            for key in get_table(table).model.objects.filter(needs_review=True).values_list("pk", flat=True):
                first_seen.setdefault((table, str(key)), day)
        decisions = steward_day(user, args.capacity, day, first_seen, steward, args)
        today.append(f"steward {decisions} decisions")
        shares, pending, oldest = [], 0, 0
        for table in ("年金计划", "组合计划"):
            model = get_table(table).model
            total = model.objects.count()
            auto = model.objects.filter(source=Source.AUTO_DERIVED).count()
            shares.append(f"{auto / total:6.2%} ({auto})")
            waiting = list(model.objects.filter(needs_review=True).values_list("pk", flat=True))
            pending += len(waiting)
            oldest = max([oldest] + [day - first_seen[(table, str(k))] for k in waiting])
        print(f"{day:3d} | {shares[0]:>16} | {shares[1]:>16} | {pending:7d} | {oldest:5d} | {'; '.join(today)}")

    worked = {k: v for k, v in world.truth.typos.items() if k in steward.merged or k in steward.promoted}
    from_suggestion = [k for k in worked if k in steward.merged]

    def right_merge(k: tuple[str, str], right: str) -> bool:
        if k in world.truth.typos:
            return world.truth.typos[k] == right
        if k[1] in world.truth.new_plans or k[1] in world.truth.new_portfolios:
            return False  # a genuinely new key merged away
        return right in k[1]  # junk around the very key it quotes ('P0123', P0123;P0123)

    wrong = [k for k, right in steward.merged.items() if not right_merge(k, right)]
    with connection.cursor() as cur:
        junk_rows = []
        for table in ("年金计划", "组合计划"):
            key = get_table(table).key_column
            cur.execute(f'SELECT "{key}" FROM "{table}"')
            known = set(world.plans) | set(world.truth.new_plans) | set(world.portfolios)
            known |= set(world.truth.new_portfolios) | {k for (_, k) in world.truth.typos}
            junk_rows += [(table, k) for (k,) in cur.fetchall() if k not in known]
    print()
    print(
        f"typos in the files: {len(world.truth.typos)}; worked by the steward: {len(worked)}; merged from a "
        f"suggestion (queue merge or 隔离行 correction): {len(from_suggestion)} "
        f"({len(from_suggestion) / max(len(worked), 1):.0%}); "
        f"promoted: {len(worked) - len(from_suggestion)}; not worked yet: {len(world.truth.typos) - len(worked)}"
    )
    print(f"wrong merges: {len(wrong)} {wrong[:5]}")
    print(f"junk keys as reference rows: {len(junk_rows)} {junk_rows[:5]}")
    from pipeline.models import QuarantinedRow

    print(f"rows quarantined (bad keys, kept for the stewards): {QuarantinedRow.objects.count()}")
    print(f"merges refused / promotes refused: {steward.refused}; {time.perf_counter() - started:.0f} s")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
