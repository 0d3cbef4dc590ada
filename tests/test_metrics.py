"""The statistics as the field reports them: Student's t for means, Wilson for proportions, Wang et al.'s SSIM."""
import numpy as np
import pytest

from mimic.metrics import SSIM_SETTINGS, format_ci, mean_ci95, proportion_ci95, ssim


@pytest.mark.parametrize("n, t", [(2, 12.706), (4, 3.182), (10, 2.262), (30, 2.045)])
def test_mean_ci95_uses_student_t(n, t):
    v = np.arange(n, dtype=float)
    m, half = mean_ci95(v)
    assert m == pytest.approx(v.mean())
    assert half == pytest.approx(t * v.std(ddof=1) / np.sqrt(n), rel=1e-3)


def test_mean_ci95_degenerate():
    assert np.isnan(mean_ci95([1.0])[1]) and np.isnan(mean_ci95([])[0])


@pytest.mark.parametrize("k, n", [(0, 500), (500, 500), (90, 100), (1, 10)])
def test_proportion_ci95_is_wilson(k, n):
    z = 1.959963984540054
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    got = proportion_ci95(k, n)
    assert got == pytest.approx((p, max(0.0, centre - half), min(1.0, centre + half)), abs=1e-9)
    assert 0 <= got[1] <= p <= got[2] <= 1
    assert proportion_ci95(np.arange(n) < k) == got
    if k == 0:
        assert got[1] == 0 and 0.0076 < got[2] < 0.0077  # 0 of 500: [0, 0.76%], not 0 +- 0.4%


def test_format_ci_prints_asymmetric_intervals_as_bounds():
    p, lo, hi = proportion_ci95(0, 500)
    assert format_ci(p, (lo, hi), 1, scale=100) == "0.0 [0.0, 0.8]"
    assert format_ci(22.05, 0.26) == "22.05 ± 0.26"


def test_ssim_is_the_gaussian_form_of_wang_et_al():
    """sigma 1.5 Gaussian window, population covariances: equal to a direct implementation of the 2004 formula."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert SSIM_SETTINGS == {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}

    def direct(x, y):
        x, y = x[..., 0] / 255.0, y[..., 0] / 255.0
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5)  # noqa: E731  (the 11x11 window)
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        return m[5:-5, 5:-5].mean()  # skimage averages where the window fits

    got = ssim(a, b)
    assert got == pytest.approx([direct(x, y) for x, y in zip(a, b)], abs=1e-6)
