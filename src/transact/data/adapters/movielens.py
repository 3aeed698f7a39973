"""MovieLens releases as world dirs: rating -> action rules and the GroupLens file layouts.

Ratings become actions by :class:`RatingMapping` (default: ``>= 4.5`` repin, ``>= 3.5``
click, ``<= 2`` hide, otherwise an impression only); tags (ml-latest, ml-10m) become
``tag`` events (in sequences, not labels). :func:`import_movielens` reads any of the
layouts its docstring lists into a :class:`~transact.data.adapters.normalized.LogInput` and hands it
to :func:`~transact.data.adapters.writer.write_log_world` (requests, item embeddings,
split). Timestamps are seconds in MovieLens and become milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from transact.data.adapters.item_content import ItemRepresentation
from transact.data.adapters.normalized import ItemInput, LogChunk, log_vocabulary
from transact.data.adapters.requests import RequestConfig
from transact.data.adapters.source_files import checked_column, item_rows, read_csv
from transact.data.adapters.writer import LogWorldWriter
from transact.data.io import DataError, check_milliseconds, where
from transact.data.schema import ActionVocabulary

WORLD = ActionVocabulary()
"""MovieLens maps ratings onto the simulated world's actions (repin, click, hide): their
roles (negative, main positive) are the world vocabulary's."""


@dataclass(frozen=True)
class RatingMapping:
    """Rating -> action rules, first match wins; no match = impression only.

    Example::

        RatingMapping.parse("repin>=4.5,click>=3.5,hide<=2")
    """

    rules: tuple[tuple[str, str, float], ...] = (
        ("repin", ">=", 4.5),
        ("click", ">=", 3.5),
        ("hide", "<=", 2.0),
    )

    def __post_init__(self) -> None:
        for action, op, _ in self.rules:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", action) or action == "impression":
                raise ValueError(f"RatingMapping: {action!r} is not an action name")
            if op not in (">=", "<=", ">", "<", "=="):
                raise ValueError(f"RatingMapping: unknown comparison {op!r} for {action!r}")

    @classmethod
    def parse(cls, text: str) -> RatingMapping:
        rules = []
        for part in text.split(","):
            m = re.fullmatch(r"\s*([\w\-]+)\s*(>=|<=|==|>|<)\s*([0-9.]+)\s*", part)
            if not m:
                raise ValueError(f"rating map rule {part!r}: expected e.g. 'repin>=4.5'")
            rules.append((m.group(1), m.group(2), float(m.group(3))))
        return cls(tuple(rules))

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions ratings map to: the world's order where they are its actions."""
        names = list(dict.fromkeys(a for a, _, _ in self.rules))
        return tuple(sorted(names, key=lambda a: WORLD.names.index(a) if a in WORLD.names else 99))

    def vocabulary(self, with_tags: bool) -> ActionVocabulary:
        """The log's vocabulary: the rating actions (the world's roles where they are the
        world's actions) and ``tag`` (positive, sequences only) when there are tags."""
        labels = self.actions
        return log_vocabulary(
            labels,
            negative=[a for a in labels if a in WORLD.negative],
            positive=[a for a in labels if a not in WORLD.negative]
            + (["tag"] if with_tags else []),
            main_positive=WORLD.main_positive if WORLD.main_positive in labels else None,
            extra_actions=("tag",) if with_tags else (),
        )

    def apply(self, ratings: np.ndarray) -> np.ndarray:
        """``[N]`` ratings -> ``[N]`` object array of action names ('' = impression only)."""
        out = np.full(ratings.shape, "", dtype=object)
        done = np.zeros(ratings.shape, bool)
        ops = {
            ">=": np.greater_equal,
            "<=": np.less_equal,
            ">": np.greater,
            "<": np.less,
            "==": np.equal,
        }
        for action, op, value in self.rules:
            hit = ops[op](ratings, value) & ~done
            out[hit] = action
            done |= hit
        return out


def _read_text_lines(path: Path, encoding: str = "latin-1") -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return [line for line in path.read_text(encoding=encoding).splitlines() if line.strip()]


def _read_colon_table(path: Path, names: Sequence[str]) -> pa.Table:
    """A ``::``-separated file of numbers (ml-1m/10m ratings, tags' ids) via ``:`` splits."""
    raw = read_csv(
        path,
        read_options=pacsv.ReadOptions(autogenerate_column_names=True),
        parse_options=pacsv.ParseOptions(delimiter=":", quote_char=False),
    )
    cols = raw.column_names[::2]  # "a::b" splits into a, "", b
    if len(cols) < len(names):
        raise DataError(f"{path}: expected {len(names)} '::'-separated fields, got {len(cols)}")
    return pa.table({n: raw.column(c) for n, c in zip(names, cols, strict=False)})


GENDERS = {"M": "male", "F": "female"}
"""MovieLens gender codes -> the user table's ``gender`` values (others: "unspecified")."""


def _genre_list(text: str) -> list[str]:
    """``"A|B"`` -> ``["A", "B"]``; MovieLens' "(no genres listed)" and "" -> ``[]``."""
    return [] if text in ("", "(no genres listed)") else text.split("|")


def _read_movie_lines(
    path: Path,
    sep: str,
    layout: str,
    genres_of: Callable[[list[str]], list[str]],
    min_fields: int = 3,
) -> tuple[list[int], list[str], list[list[str]]]:
    """A ``sep``-separated movie file (id, title, ...) -> ``(ids, titles, genres)``; a line
    with fewer than ``min_fields`` fields or a non-numeric id raises naming its row."""
    ids, titles, genres = [], [], []
    for row, line in enumerate(_read_text_lines(path)):
        parts = line.split(sep)
        if len(parts) < min_fields or not parts[0].isdigit():
            raise DataError(f"{where(path, layout, row)}: bad line {line!r}")
        ids.append(int(parts[0]))
        titles.append(parts[1])
        genres.append(genres_of(parts))
    return ids, titles, genres


def _read_genders(path: Path, sep: str, field: int) -> dict[int, str]:
    """``{user id: gender}`` from a ``sep``-separated user file, gender code in ``field``."""
    return {
        int(p[0]): GENDERS.get(p[field], "unspecified")
        for p in (line.split(sep) for line in _read_text_lines(path))
    }


def _read_grouplens_classic(src: Path) -> tuple[Any, ...]:
    """ml-1m / ml-10m (``*.dat``) or the original ml-100k (``u.*``) files."""
    user_attrs: dict[str, dict[int, str]] = {}
    tag = None
    if (src / "ratings.dat").exists():
        rpath = src / "ratings.dat"
        ratings = _read_colon_table(rpath, ["user_id", "item_id", "rating", "timestamp"])
        m_ids_l, titles, genres = _read_movie_lines(
            src / "movies.dat", "::", "MovieID::Title::Genres", lambda p: _genre_list(p[2])
        )
        if (src / "users.dat").exists():
            user_attrs["gender"] = _read_genders(src / "users.dat", "::", 1)
        tags_path = src / "tags.dat"
        if tags_path.exists():
            rows = [line.split("::") for line in _read_text_lines(tags_path, "utf-8")]
            tag = (
                np.array([int(r[0]) for r in rows], np.int64),
                np.array([int(r[1]) for r in rows], np.int64),
                np.array([int(r[-1]) for r in rows], np.int64) * 1000,
            )
    else:
        rpath = src / "u.data"
        ratings = read_csv(
            rpath,
            read_options=pacsv.ReadOptions(
                column_names=["user_id", "item_id", "rating", "timestamp"]
            ),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        )
        genre_names: list[str] = []
        if (src / "u.genre").exists():
            pairs = [line.split("|") for line in _read_text_lines(src / "u.genre")]
            genre_names = [name for name, _ in sorted(pairs, key=lambda p: int(p[1]))]

        def flagged_genres(parts: list[str]) -> list[str]:
            flags = parts[5:]
            names = genre_names or [f"genre{k}" for k in range(len(flags))]
            return [names[k] for k, f in enumerate(flags) if f == "1" and k < len(names)]

        m_ids_l, titles, genres = _read_movie_lines(
            src / "u.item", "|", "movie id|title|...", flagged_genres, min_fields=5
        )
        if (src / "u.user").exists():
            user_attrs["gender"] = _read_genders(src / "u.user", "|", 2)
    r_user = checked_column(ratings, "user_id", rpath, "int").astype(np.int64)
    r_item = checked_column(ratings, "item_id", rpath, "int")
    r_value = checked_column(ratings, "rating", rpath, "num").astype(np.float64)
    r_time = checked_column(ratings, "timestamp", rpath, "int").astype(np.int64) * 1000
    m_ids = np.array(m_ids_l, np.int64)
    return rpath, r_user, r_item, r_value, r_time, m_ids, titles, genres, tag, user_attrs


def import_movielens(
    path: Path | str,
    out_dir: Path | str,
    *,
    d_item: int = 32,
    embeddings: str = "auto",
    rating_mapping: RatingMapping | None = None,
    requests: RequestConfig | None = None,
    seed: int = 0,
    item_repr: ItemRepresentation | None = None,
) -> Path:
    """Convert a MovieLens release into a world dir.

    Reads the GroupLens CSV layout (``ratings.csv``, ``movies.csv``, optional
    ``tags.csv``: ml-latest(-small), ml-20m/25m/32m), the ``::`` layout of ml-1m / ml-10m
    (``ratings.dat``, ``movies.dat``, optional ``users.dat`` / ``tags.dat``), the
    original ml-100k files (``u.data``, ``u.item``, ``u.genre``, ``u.user``) or RecBole's
    atomic files (``*.inter``, ``*.item``, ``*.user``: the ``movielens-100k`` copy in
    ``../shared``).
    Timestamps are seconds in MovieLens and become milliseconds. Items are embedded by
    ``item_repr`` (default: ``embeddings``, "auto" | "text" | "genre", over titles and
    genres).
    """
    src = Path(path)
    mapping = rating_mapping or RatingMapping()
    user_attrs: dict[str, dict[int, str]] = {}
    if (src / "ratings.csv").exists():
        rpath, mpath = src / "ratings.csv", src / "movies.csv"
        ratings = read_csv(rpath)
        movies = read_csv(
            mpath, convert_options=pacsv.ConvertOptions(column_types={"title": pa.string()})
        )
        r_user = checked_column(ratings, "userId", rpath, "int").astype(np.int64)
        r_item = checked_column(ratings, "movieId", rpath, "int")
        r_value = checked_column(ratings, "rating", rpath, "num").astype(np.float64)
        r_time = checked_column(ratings, "timestamp", rpath, "int").astype(np.int64) * 1000
        m_ids = checked_column(movies, "movieId", mpath, "int")
        titles = movies.column("title").to_pylist()
        genres = [_genre_list(g) for g in movies.column("genres").to_pylist()]
        tags_path = src / "tags.csv"
        tag = None
        if tags_path.exists():
            tags = read_csv(
                tags_path, convert_options=pacsv.ConvertOptions(column_types={"tag": pa.string()})
            )
            tag = (
                checked_column(tags, "userId", tags_path, "int").astype(np.int64),
                checked_column(tags, "movieId", tags_path, "int"),
                checked_column(tags, "timestamp", tags_path, "int").astype(np.int64) * 1000,
            )
        dataset = src.name
    elif (src / "ratings.dat").exists() or (src / "u.data").exists():
        rpath, r_user, r_item, r_value, r_time, m_ids, titles, genres, tag, user_attrs = (
            _read_grouplens_classic(src)
        )
        dataset = src.name
    else:
        inter = sorted(src.glob("*.inter"))
        item_files = sorted(src.glob("*.item"))
        if not inter or not item_files:
            raise DataError(
                f"{src}: neither ratings.csv/movies.csv nor RecBole *.inter/*.item files found"
            )
        opts = pacsv.ParseOptions(delimiter="\t", quote_char=False)
        rpath, mpath = inter[0], item_files[0]
        ratings = read_csv(rpath, parse_options=opts)
        ratings = ratings.rename_columns([c.split(":")[0] for c in ratings.column_names])
        r_user = checked_column(ratings, "user_id", rpath, "int").astype(np.int64)
        r_item = checked_column(ratings, "item_id", rpath, "int")
        r_value = checked_column(ratings, "rating", rpath, "num").astype(np.float64)
        r_time = (
            checked_column(ratings, "timestamp", rpath, "num").astype(np.float64) * 1000
        ).astype(np.int64)
        movies = read_csv(
            mpath,
            parse_options=opts,
            convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
        )
        movies = movies.rename_columns([c.split(":")[0] for c in movies.column_names])
        m_ids = checked_column(movies, "item_id", mpath, "int")
        years = (
            movies.column("release_year").to_pylist()
            if "release_year" in movies.column_names
            else None
        )
        titles = [
            f"{t} ({y})" if years and y is not None else str(t)
            for t, y in zip(
                movies.column("movie_title").to_pylist(), years or [None] * len(m_ids), strict=True
            )
        ]
        genres = [str(g).split() if g else [] for g in movies.column("class").to_pylist()]
        tag = None
        user_files = sorted(src.glob("*.user"))
        if user_files:
            users = read_csv(user_files[0], parse_options=opts)
            users = users.rename_columns([c.split(":")[0] for c in users.column_names])
            if "gender" in users.column_names:
                user_attrs["gender"] = {
                    int(u): GENDERS.get(str(x), "unspecified")
                    for u, x in zip(
                        users.column("user_id").to_pylist(),
                        users.column("gender").to_pylist(),
                        strict=True,
                    )
                }
        dataset = src.name
    check_milliseconds(r_time, rpath, "timestamp")
    known = {int(m): i for i, m in enumerate(m_ids.tolist())}
    r_index = item_rows(r_item, known, rpath, "movieId" if rpath.suffix == ".csv" else "item_id")
    labels = mapping.apply(r_value)
    vocab = mapping.vocabulary(with_tags=tag is not None)
    heads = mapping.actions
    bits = np.zeros(r_user.size, np.int64)
    for k, action in enumerate(heads):
        bits[labels == action] = 1 << k
    del r_index  # checked above: every rated movie is in the movie file
    if tag is not None:
        item_rows(  # raises naming the row of a tag on an unknown movie
            tag[1],
            known,
            src / ("tags.csv" if (src / "tags.csv").exists() else "tags.dat"),
            "movieId",
        )
    texts = [
        f"{t}. Genres: {', '.join(g) if g else 'unknown'}."
        for t, g in zip(titles, genres, strict=True)
    ]
    items = ItemInput(
        external_ids=[str(m) for m in m_ids.tolist()], texts=texts, genres=genres,
        extra={"has_text": True},
    )  # fmt: skip
    with LogWorldWriter(
        out_dir, dataset=f"movielens:{dataset}", actions=vocab, labels=heads,
        requests=requests, seed=seed, expected_rows=r_user.size,
    ) as writer:  # fmt: skip
        keys = pa.array(np.asarray(r_item, np.int64))
        writer.add(LogChunk("impressions", r_user, keys, r_time, bits))
        if tag is not None:
            codes = np.full(tag[0].size, vocab.id("tag"), np.int64)
            tag_keys = pa.array(np.asarray(tag[1], np.int64))
            writer.add(LogChunk("sequence_only", tag[0], tag_keys, tag[2], codes))
        return writer.finish(
            items,
            item_repr=item_repr or ItemRepresentation(embeddings),
            d_item=d_item,
            user_attributes=user_attrs,
            extra={
                "rating_mapping": [list(r) for r in mapping.rules],
                "source_path": str(src),
            },
        )
