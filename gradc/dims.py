"""Dim arithmetic: `4 * H`, `N * T`, `D // NH`, `T - 1`, at compile time.

A dim in a shape is an `int`, a dim name (a `str`: `"N"`), or a compound dim:
a `Dim`, which is a `str` holding its canonical Python text (`"4 * H"`) and its
polynomial over the names, so that `2*H - H` is `"H"` and two spellings of
one size compare equal. A floor division that does not divide exactly is an
atom of its own (`Floor`, `"D // 4"`). Shapes stay tuples of `int | str`:
every stage that compares or prints dims keeps working unchanged.

>>> mul(4, "H"), sub(mul(2, "H"), "H"), add("N", 1), floordiv(mul(8, "D"), 4)
('4 * H', 'H', 'N + 1', '2 * D')
>>> floordiv("D", 4), atoms(mul(floordiv("D", 4), "N"))
('D // 4', ['D', 'N'])
"""

from __future__ import annotations

DimValue = int | str


class Dim(str):
    """A compound dim: its text, and its polynomial {monomial: coefficient},
    a monomial being a sorted tuple of atoms (names or `Floor`s)."""

    poly: dict


class Floor(str):
    """`a // b` that does not divide exactly: an atom over two dims."""

    num: DimValue
    den: DimValue


class Runtime(str):
    """An integer known only at run time, a loop variable (`t`), as an atom:
    a slice bound `t + H` is one, so that the length of `x[t:t + H]` is H.
    It is never a size: a shape that holds one is refused where it is made.
    Two loops' variables of one name (nested loops) are two atoms."""

    loop: int

    def __eq__(self, other):
        return isinstance(other, Runtime) and (str(self), self.loop) == (str(other), other.loop)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((str(self), self.loop))


def runtime(name: str, loop: int) -> Runtime:
    atom = Runtime(name)
    atom.loop = loop
    return atom


def poly(d: DimValue) -> dict:
    if isinstance(d, bool):
        raise TypeError("a bool is not a dim")
    if isinstance(d, int):
        return {(): d} if d else {}
    if isinstance(d, Dim):
        return d.poly
    return {(d,): 1}


def _make(p: dict) -> DimValue:
    p = {m: c for m, c in p.items() if c}
    if not p:
        return 0
    if list(p) == [()]:
        return p[()]
    if len(p) == 1:
        ((m, c),) = p.items()
        if c == 1 and len(m) == 1:
            return m[0]
    dim = Dim(_text(p))
    dim.poly = p
    return dim


def _operand_text(d, binds_looser: str) -> str:
    """`d` as an operand of `//`, in parentheses when it has an operator that
    binds looser there (`(H - K + 2) // 2`, `D // (2 * H)`; not `2 * D // 3`),
    so that the text reads, and runs, as it means."""
    text = str(d)
    return f"({text})" if any(op in text for op in binds_looser) else text


def _atom_text(a: str, alone: bool) -> str:
    return f"({a})" if isinstance(a, Floor) and not alone else str(a)


def _text(p: dict) -> str:
    # higher-degree terms first, then by name; the constant last
    order = sorted(p, key=lambda m: (-len(m), m))
    parts = []
    for m in order:
        c = p[m]
        if not m:
            term = str(abs(c))
        else:
            # alone: no operator binds to it, but a leading minus does (-(D // 2))
            alone = len(m) == 1 and (c == 1 or c == -1 and bool(parts))
            names = " * ".join(_atom_text(a, alone) for a in m)
            term = names if abs(c) == 1 else f"{abs(c)} * {names}"
        if not parts:
            parts.append(("-" if c < 0 else "") + term)
        else:
            parts.append((" - " if c < 0 else " + ") + term)
    return "".join(parts)


def add(a: DimValue, b: DimValue) -> DimValue:
    out = dict(poly(a))
    for m, c in poly(b).items():
        out[m] = out.get(m, 0) + c
    return _make(out)


def neg(a: DimValue) -> DimValue:
    return _make({m: -c for m, c in poly(a).items()})


def sub(a: DimValue, b: DimValue) -> DimValue:
    return add(a, neg(b))


def mul(a: DimValue, b: DimValue) -> DimValue:
    out: dict = {}
    for m1, c1 in poly(a).items():
        for m2, c2 in poly(b).items():
            m = tuple(sorted(m1 + m2))
            out[m] = out.get(m, 0) + c1 * c2
    return _make(out)


def floordiv(a: DimValue, b: DimValue) -> DimValue:
    """`a // b`; exact when b is an int dividing every coefficient of a, and
    with the whole multiples of an int b taken out of the floor:

    >>> floordiv(sub("S", 2), 2), floordiv(add(mul(3, "D"), 4), 2), floordiv(add("D", 1), 2)
    ('S // 2 - 1', 'D + D // 2 + 2', '(D + 1) // 2')
    >>> neg(floordiv("D", 2)), floordiv(neg("D"), 2)  # two sizes, two texts
    ('-(D // 2)', '-D + D // 2')
    """
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if b == 1:
        return a
    if a == b:
        return 1
    if isinstance(b, int) and b > 0:
        # each term's multiple of b comes out whole: (S - 2) // 2 is S // 2 - 1, so that
        # it meets S // 2 - 1 written another way (a pool's output size) as the same size
        whole = {m: c // b for m, c in poly(a).items()}
        rest = {m: c % b for m, c in poly(a).items() if c % b}
        if not rest:
            return _make(whole)
        if whole and any(whole.values()):
            return add(_make(whole), floordiv(_make(rest), b))
    pa, pb = poly(a), poly(b)
    if (
        len(pb) == 1
        and list(pb.values())[0] == 1
        and all(set(list(pb)[0]) <= set(m) and c > 0 for m, c in pa.items())
    ):
        # (4*N*H) // H = 4*N: every term is a multiple of the divisor's names
        (den,) = pb
        out = {}
        for m, c in pa.items():
            rest = list(m)
            for name in den:
                rest.remove(name)
            out[tuple(rest)] = c
        return _make(out)
    atom = Floor(f"{_operand_text(a, '+-')} // {_operand_text(b, '+-*/')}")
    atom.num, atom.den = a, b
    return atom


def ceildiv(a: DimValue, b: DimValue) -> DimValue:
    """`-(-a // b)` for b > 0, written `(a + b - 1) // b` unless b divides a:
    the length of a slice of span a and step b.

    >>> ceildiv(mul(2, "H"), 2), ceildiv("D", 2), ceildiv("D", "H"), ceildiv(mul(3, "H"), "H")
    ('H', '(D + 1) // 2', '(D + H - 1) // H', 3)
    """
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    exact = floordiv(a, b)
    if not isinstance(exact, Floor) and mul(exact, b) == a:
        return exact
    return floordiv(add(a, sub(b, 1)), b)


def varies(d: DimValue) -> bool:
    """Whether `d` holds a `Runtime` atom (a loop variable): not a size."""
    stack = [d]
    while stack:
        d = stack.pop()
        if isinstance(d, Runtime):
            return True
        if isinstance(d, Floor):
            stack += [d.num, d.den]
        elif isinstance(d, Dim):
            stack += [a for m in d.poly for a in m]
    return False


def is_symbolic(d: DimValue) -> bool:
    return not isinstance(d, int)


def atoms(d: DimValue) -> list[str]:
    """The dim names `d` is made of, sorted."""
    found: set[str] = set()
    stack = [d]
    while stack:
        d = stack.pop()
        if isinstance(d, Floor):
            stack += [d.num, d.den]
        elif isinstance(d, Dim):
            stack += [a for m in d.poly for a in m]
        elif isinstance(d, str):
            found.add(d)
    return sorted(found)


def known_negative(d: DimValue) -> bool:
    """True when `d` is certainly < 0: `-N`, `-2 * H - 1` (dims are sizes, >= 1)."""
    p = poly(d)
    return bool(p) and all(c <= 0 for c in p.values())


def known_positive(d: DimValue) -> bool:
    """True when `d` is certainly >= 1: `H`, `2 * H - 1`, `N * H`; not `H - 1`
    or `D // 4` (either may be 0). Each dim name is a size, >= 1, so a sum of
    its terms with coefficients >= 0 is least where every name is 1.

    >>> known_positive(sub(mul(2, "H"), 1)), known_positive(sub("H", 1))
    (True, False)
    """
    p = poly(d)
    terms = [(m, c) for m, c in p.items() if m]
    if any(c < 0 or any(isinstance(a, (Floor, Runtime)) for a in m) for m, c in terms):
        return False
    return sum(p.values()) >= 1


def at_least_zero(d: DimValue) -> bool:
    """True when `d` >= 0 at every size, each dim name a size >= 1: `N - 1`,
    `3 * H - 2 * H` (known_nonnegative asks every coefficient to be >= 0)."""
    return known_positive(add(d, 1))


def known_nonnegative(d: DimValue) -> bool:
    """True when `d` is certainly >= 0 (dims are sizes, so >= 0 each)."""
    return all(c >= 0 for c in poly(d).values())


def substitute(d: DimValue, mapping: dict) -> DimValue:
    """`d` with each dim name in `mapping` replaced by its value."""
    if isinstance(d, int):
        return d
    if isinstance(d, Floor):
        return floordiv(substitute(d.num, mapping), substitute(d.den, mapping))
    if isinstance(d, Dim):
        total: DimValue = 0
        for m, c in d.poly.items():
            term: DimValue = c
            for a in m:
                term = mul(term, substitute(a, mapping))
            total = add(total, term)
        return total
    return mapping.get(d, d)


def solve(d: DimValue, value: DimValue) -> tuple[str, DimValue] | None:
    """For `d` = c*A + k in one dim name A: (A, (value - k) // c) when that
    division is exact, else None."""
    p = poly(d)
    names = [m for m in p if m]
    if len(names) != 1 or len(names[0]) != 1 or isinstance(names[0][0], Floor):
        return None
    (atom,) = names[0]
    c, k = p[names[0]], p.get((), 0)
    rest = sub(value, k)
    solved = floordiv(rest, c)
    if isinstance(solved, Floor) or mul(solved, c) != rest:
        return None
    return atom, solved


def _value(d: DimValue, env: dict):
    """`d` at the sizes `env`, with `a // b` taken as the exact a / b."""
    from fractions import Fraction

    if isinstance(d, int):
        return Fraction(d)
    if isinstance(d, Floor):
        return _value(d.num, env) / _value(d.den, env)
    if isinstance(d, Dim):
        total = Fraction(0)
        for m, c in d.poly.items():
            term = Fraction(c)
            for a in m:
                term *= _value(a, env)
            total += term
        return total
    return Fraction(env[d])


def same_size(a: DimValue, b: DimValue) -> bool:
    """Whether `a` and `b` are one size, taking each `x // k` that appears as
    dividing exactly (as a reshape to `(N, NH, E // NH)` means it to; NumPy
    checks the sizes when the code runs). Polynomials that agree at several
    points of distinct primes are the same."""
    if a == b:
        return True
    names = sorted(set(atoms(a)) | set(atoms(b)))
    primes = (101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173)
    for shift in range(4):
        env = {n: primes[(i * 3 + shift) % len(primes)] * (shift + 1) for i, n in enumerate(names)}
        if _value(a, env) != _value(b, env):
            return False
    return True
