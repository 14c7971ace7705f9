"""A seconds-long experiment for the reproduction tests: least squares on a fixed noisy line against a
mean predictor. Imported by the tests for the paper's values, and copied into workspaces as reproduce.py."""
import csv
import json
import os

XS = [i / 10 for i in range(20)]
YS = [2.0 * x + 1.0 + (0.5 if i % 2 else -0.5) * (1 + x / 4) for i, x in enumerate(XS)]


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    w = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return w, my - w * mx


def mse(pred, ys):
    return sum((p - y) ** 2 for p, y in zip(pred, ys, strict=True)) / len(ys)


def results():
    """{"slope", "Baseline", "Ours"}: fitted slope and the two test errors."""
    w, b = fit(XS, YS)
    mean = sum(YS) / len(YS)
    return {"slope": w, "Baseline": mse([mean] * len(YS), YS), "Ours": mse([w * x + b for x in XS], YS)}


def main():
    r = results()
    os.makedirs("results", exist_ok=True)
    os.makedirs("figures", exist_ok=True)
    rows = [("Baseline", r["Baseline"]), ("Ours", r["Ours"])]
    metrics = {"text/1": r["slope"]}
    with open("results/table_1.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["Method", "MSE", "Delta"])
        for name, value in rows:
            out.writerow([name, f"{value:.3f}", f"{value - r['Baseline']:.3f}"])
            metrics[f"table_1/{name.lower()}/mse"] = value
            metrics[f"table_1/{name.lower()}/delta"] = value - r["Baseline"]
    with open("results/metrics.json", "w") as f:
        json.dump(metrics, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w, b = fit(XS, YS)
    plt.figure(figsize=(4, 3))
    plt.scatter(XS, YS, s=8)
    plt.plot(XS, [w * x + b for x in XS], color="red")
    plt.savefig("figures/figure_1.png", dpi=80)
    print("metrics:", metrics)


if __name__ == "__main__":
    main()
