"""Offline datasets for the zoo tasks.

Every loader returns raw data in its native dtype (uint8 images, int16 audio) plus the
per-tensor preprocessing x = (raw * scale - mean) / std that the manifest records, so the
C++ side converts exactly as training did.
"""
import gzip
import os
import subprocess
import tempfile

import numpy as np

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                  "sneaker", "bag", "ankle boot"]


def _idx(path, header):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read()[header:], dtype=np.uint8)


def fashion_mnist():
    """Returns (xtr uint8 (60000,1,28,28), ytr int64, xte uint8 (10000,1,28,28), yte int64)."""
    p = lambda n: os.path.join(FMNIST_DIR, n)
    xtr = _idx(p("train-images-idx3-ubyte.gz"), 16).reshape(-1, 1, 28, 28)
    ytr = _idx(p("train-labels-idx1-ubyte.gz"), 8).astype(np.int64)
    xte = _idx(p("t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 1, 28, 28)
    yte = _idx(p("t10k-labels-idx1-ubyte.gz"), 8).astype(np.int64)
    return xtr, ytr, xte, yte


FMNIST_PRE = {"scale": 1.0 / 255.0, "mean": 0.2860, "std": 0.3530}


def digits():
    """scikit-learn's bundled 8x8 digits (1797 samples, values 0..16) as uint8 (N,1,8,8)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    return x, d.target.astype(np.int64)


DIGITS_PRE = {"scale": 1.0 / 16.0, "mean": 0.3060, "std": 0.3790}

# ---------------------------------------------------------------- synthesised speech
SPEECH_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPEECH_RATE = 8000
SPEECH_LEN = 8000  # 1 s clips
SPEECH_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                 "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
SPEECH_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3",
                   "+f4", "+f5", "+croak", "+whisper", "+klatt"]
SPEECH_PRE = {"scale": 1.0 / 32768.0, "mean": 0.0, "std": 0.1}


def _espeak(voice, speed, pitch, word):
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                        f.name, word], check=True, capture_output=True)
        raw = open(f.name, "rb").read()
    # espeak-ng writes a 44-byte canonical RIFF header, 16-bit mono, 22050 Hz
    return np.frombuffer(raw[44:], dtype="<i2").astype(np.float32)


def synth_speech(n, seed, cache_dir):
    """n clips of spoken digit words synthesised with espeak-ng (voices x variants x speed
    x pitch, random shift inside 1 s, gain, additive noise at random SNR), 8 kHz int16.
    Cached as .npz in cache_dir (deterministic for a given n, seed)."""
    from scipy.signal import resample_poly
    path = os.path.join(cache_dir, f"speech_{n}_{seed}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["x"], z["y"]
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, SPEECH_LEN), np.int16)
    y = np.zeros(n, np.int64)
    for i in range(n):
        w = i % 10
        voice = SPEECH_VOICES[rng.integers(len(SPEECH_VOICES))] + \
            SPEECH_VARIANTS[rng.integers(len(SPEECH_VARIANTS))]
        speed = int(rng.integers(110, 230))
        pitch = int(rng.integers(15, 85))
        a = _espeak(voice, speed, pitch, SPEECH_WORDS[w])
        a = resample_poly(a, 160, 441)  # 22050 -> 8000 Hz
        nz = np.nonzero(np.abs(a) > 200)[0]
        if len(nz):
            a = a[nz[0]: nz[-1] + 1]
        a = a[:SPEECH_LEN]
        clip = np.zeros(SPEECH_LEN, np.float32)
        off = int(rng.integers(0, SPEECH_LEN - len(a) + 1))
        clip[off: off + len(a)] = a
        peak = np.abs(clip).max() + 1e-6
        clip *= rng.uniform(0.2, 0.9) * 32767 / peak
        snr_db = rng.uniform(5, 30)
        sig_pow = np.mean(clip[off: off + len(a)] ** 2) + 1e-6
        clip += rng.normal(0, np.sqrt(sig_pow / 10 ** (snr_db / 10)), SPEECH_LEN)
        x[i, 0] = np.clip(np.round(clip), -32768, 32767).astype(np.int16)
        y[i] = w
    perm = rng.permutation(n)
    x, y = x[perm], y[perm]
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, x=x, y=y)
    return x, y


def preprocess(raw, pre):
    return (raw.astype(np.float32) * np.float32(pre["scale"]) - np.float32(pre["mean"])) / \
        np.float32(pre["std"])
