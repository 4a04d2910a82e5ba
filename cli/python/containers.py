# Build and drop dicts, lists and tuples of small ints and floats.
import sys

rounds = int(sys.argv[1])
total = 0
for r in range(rounds):
    rows = []
    for i in range(2000):
        x = i * 0.5 + r
        rows.append({"id": i, "x": x, "y": float(i % 7), "pair": (i, x), "bits": [i & 1, i & 2, i & 4]})
    index = {row["id"]: row["pair"] for row in rows}
    grid = [tuple(range(k, k + 8)) for k in range(0, 1600, 8)]
    floats = [row["x"] * row["y"] for row in rows]
    total += len(index) + sum(map(sum, grid)) + int(sum(floats)) + sum(len(row["bits"]) for row in rows)
    del rows, index, grid, floats
print(total)
