"""The inference engine: device choice, OOM fallback, cancellation, determinism, bad input."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

import napari_jointrecon as nj
from napari_jointrecon import inference
from napari_jointrecon.inference import Cancelled, denoise, iter_denoise, select_device
from napari_jointrecon.models.registry import DEFAULT_MODEL


@pytest.mark.parametrize("cuda,mps,requested,expected", [
    (True, True, "auto", "cuda"),
    (False, True, "auto", "mps"),
    (False, False, "auto", "cpu"),
    (True, False, "cpu", "cpu"),
    (True, False, "cuda", "cuda"),
    (False, True, "mps", "mps"),
])
def test_select_device_is_a_pure_choice(cuda, mps, requested, expected):
    assert select_device(requested, cuda_available=cuda, mps_available=mps) == expected


def test_select_device_refuses_what_is_missing():
    with pytest.raises(ValueError, match="CUDA was requested"):
        select_device("cuda", cuda_available=False, mps_available=False)
    with pytest.raises(ValueError, match="MPS was requested"):
        select_device("mps", cuda_available=True, mps_available=False)
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu")


def test_auto_uses_torch_cuda_check_when_not_told():
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        assert select_device("auto") == "cuda"
    with mock.patch.object(torch.cuda, "is_available", return_value=False), \
            mock.patch.object(inference, "_mps_available", return_value=False):
        assert select_device("auto") == "cpu"


@pytest.fixture(scope="module")
def slice_hu(shared_data):
    files = sorted((shared_data / "chest-ct-dicom").glob("*.dcm"))[125:127]
    return nj.load_ct(files).hu


def test_gpu_out_of_memory_falls_back_to_the_cpu(slice_hu):
    real = inference._run_torch_batch
    calls = []

    def fake(model, slices, dose, device):
        calls.append(device)
        if device == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, slices, dose, device)

    vol = nj.CTVolume(slice_hu)
    with mock.patch.object(inference, "select_device", return_value="cuda"), \
            mock.patch.object(inference, "_run_torch_batch", side_effect=fake):
        seen = []
        out = denoise(vol, model=DEFAULT_MODEL, dose=0.25, progress=seen.append)
    assert calls[0] == "cuda" and calls[-1] == "cpu"
    assert any("out of memory" in p.message for p in seen)
    assert any("out of memory" in n for n in out.notes)
    assert np.allclose(out.hu, denoise(slice_hu, model=DEFAULT_MODEL, dose=0.25, device="cpu"), atol=1e-3)


def test_progress_and_cancellation_between_batches(slice_hu):
    volume = np.concatenate([slice_hu] * 3)  # 6 slices
    seen = []
    with pytest.raises(Cancelled):
        denoise(volume, model=DEFAULT_MODEL, dose=0.25, batch_size=2, progress=seen.append,
                cancel=lambda: len(seen) >= 1)
    assert [p.done for p in seen] == [2]
    gen = iter_denoise(volume, model=DEFAULT_MODEL, dose=0.25, batch_size=2)
    assert [next(gen).done, next(gen).done] == [2, 4]
    gen.close()  # closing the generator is cancelling: nothing else runs


def test_same_input_same_output_any_size(slice_hu):
    odd = slice_hu[0, 3:500, 7:430]  # odd sizes are padded inside
    a = denoise(odd, model=DEFAULT_MODEL, dose=0.25)
    b = denoise(odd, model=DEFAULT_MODEL, dose=0.25)
    assert a.shape == odd.shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    batched = denoise(slice_hu, model=DEFAULT_MODEL, dose=0.25, batch_size=1)
    together = denoise(slice_hu, model=DEFAULT_MODEL, dose=0.25, batch_size=2)
    assert np.allclose(batched, together, atol=1e-3)


def test_volume_in_volume_out_keeps_geometry(slice_hu):
    vol = nj.CTVolume(slice_hu, spacing=(2, 0.7, 0.7), origin=(1, 2, 3))
    out = denoise(vol, model=DEFAULT_MODEL, dose=0.5)
    assert isinstance(out, nj.CTVolume) and out.shape == vol.shape
    assert out.spacing == vol.spacing and out.origin == vol.origin
    assert any(DEFAULT_MODEL in n for n in out.notes)


def test_compiled_network_gives_the_same_result(slice_hu):
    crop = np.ascontiguousarray(slice_hu[:, 128:320, 96:352])  # small, so that compiling is quick
    plain = denoise(crop, model=DEFAULT_MODEL, dose=0.25, runtime="torch")
    compiled = denoise(crop, model=DEFAULT_MODEL, dose=0.25, compile=True)
    assert (DEFAULT_MODEL, "cpu") in inference._COMPILED  # it really ran through torch.compile
    assert np.allclose(compiled, plain, atol=1e-3)  # HU; fp32 either way
    assert np.array_equal(denoise(crop, model=DEFAULT_MODEL, dose=0.25, compile=True), compiled)
    # new weights for the model (a retrained export) are compiled again, never the old module
    first = inference._COMPILED[(DEFAULT_MODEL, "cpu")]
    from napari_jointrecon.models import registry

    card = dict(registry.read_card(DEFAULT_MODEL), sha256="another")
    with mock.patch.object(registry, "read_card", return_value=card):
        inference.compiled_model(DEFAULT_MODEL, torch.nn.Identity(), "cpu")
    assert inference._COMPILED[(DEFAULT_MODEL, "cpu")][1] is not first[1]
    inference._COMPILED[(DEFAULT_MODEL, "cpu")] = first


def test_failed_compile_falls_back_to_the_plain_network(slice_hu):
    broken = mock.MagicMock(side_effect=RuntimeError("InductorError: no working C++ compiler"))
    broken.to.return_value = broken

    vol = nj.CTVolume(slice_hu[:, :64, :64].copy())
    with mock.patch.dict(inference._COMPILED, clear=True), \
            mock.patch.object(torch, "compile", return_value=broken):
        seen = []
        out = denoise(vol, model=DEFAULT_MODEL, dose=0.25, compile=True, progress=seen.append)
        assert (DEFAULT_MODEL, "cpu") not in inference._COMPILED  # the broken one is dropped
    assert broken.call_count == 1  # tried once, then the plain network ran every batch
    assert any("torch.compile failed" in p.message and "C++ compiler" in p.message for p in seen)
    assert any("torch.compile failed" in n for n in out.notes)
    assert np.array_equal(out.hu, denoise(vol.hu, model=DEFAULT_MODEL, dose=0.25, runtime="torch"))


@pytest.mark.parametrize("requested,device,compile,available,bf16_cpu,bf16_net,expected", [
    ("auto", "cpu", False, True, False, False, "onnxruntime"),
    ("auto", "cpu", False, False, False, False, "torch"),
    ("auto", "cpu", True, True, False, False, "torch"),
    ("auto", "cuda", False, True, False, False, "torch"),
    ("auto", "mps", False, True, False, False, "torch"),
    ("torch", "cpu", False, True, False, False, "torch"),
    ("onnxruntime", "cpu", False, True, False, False, "onnxruntime"),
    # a network trained with bf16 autocast runs that way on a CPU that has bf16, and only there
    ("auto", "cpu", False, True, True, True, "bf16"),
    ("auto", "cpu", False, True, True, False, "onnxruntime"),
    ("auto", "cpu", False, True, False, True, "onnxruntime"),
    ("auto", "cpu", True, True, True, True, "torch"),
    ("auto", "cuda", False, True, True, True, "torch"),
    ("bf16", "cpu", False, True, True, False, "bf16"),
    ("torch", "cpu", False, True, True, True, "torch"),
    ("onnxruntime", "cpu", False, True, True, True, "onnxruntime"),
])
def test_select_runtime_is_a_pure_choice(requested, device, compile, available, bf16_cpu, bf16_net, expected):
    assert inference.select_runtime(requested, device, compile=compile, onnxruntime_available=available,
                                    bf16_supported=bf16_cpu, trained_bf16=bf16_net) == expected


def test_select_runtime_refuses_what_cannot_run():
    with pytest.raises(ValueError, match="on the CPU here"):
        inference.select_runtime("onnxruntime", "cuda", onnxruntime_available=True)
    with pytest.raises(ValueError, match="compile is a torch option"):
        inference.select_runtime("onnxruntime", "cpu", compile=True, onnxruntime_available=True)
    with pytest.raises(ValueError, match="not installed"):
        inference.select_runtime("onnxruntime", "cpu", onnxruntime_available=False)
    with pytest.raises(ValueError, match="unknown runtime"):
        inference.select_runtime("tensorrt", "cpu")
    with pytest.raises(ValueError, match="no native bf16"):
        inference.select_runtime("bf16", "cpu", bf16_supported=False)
    with pytest.raises(ValueError, match="runs on the CPU"):
        inference.select_runtime("bf16", "cuda", bf16_supported=True)
    with pytest.raises(ValueError, match="compile runs fp32"):
        inference.select_runtime("bf16", "cpu", compile=True, bf16_supported=True)
    with pytest.raises(ValueError, match="unknown runtime"):
        denoise(np.zeros((16, 16)), model=DEFAULT_MODEL, dose=0.25, runtime="tensorrt")


def test_default_model_is_trained_bf16_and_says_so():
    assert inference.trained_bf16(DEFAULT_MODEL)  # its card's training config
    assert not inference.trained_bf16("tv")


def test_bf16_runtime_is_close_to_fp32_and_deterministic(slice_hu):
    """bf16 autocast, as the network was trained: within a few HU of fp32 torch, the same result on
    every run and for every batch size (the PSNR change on the held-out patients is in
    docs/BENCHMARKS.md). On a CPU without native bf16 it is emulated, slowly."""
    crop = np.ascontiguousarray(slice_hu[:, 100:260, 100:260])
    with mock.patch.object(inference, "cpu_bf16_supported", return_value=True):
        seen = []
        fast = denoise(nj.CTVolume(crop), model=DEFAULT_MODEL, dose=0.25, progress=seen.append)
        assert seen and all(p.runtime == "bf16" for p in seen)
        one = denoise(crop, model=DEFAULT_MODEL, dose=0.25, batch_size=1)
        named = denoise(crop, model=DEFAULT_MODEL, dose=0.25, runtime="bf16")
    plain = denoise(crop, model=DEFAULT_MODEL, dose=0.25, runtime="torch")
    assert any("bf16 autocast" in n for n in fast.notes)
    assert np.array_equal(fast.hu, one) and np.array_equal(fast.hu, named)
    diff = np.abs(fast.hu - plain)
    assert diff.mean() < 1.5 and diff.max() < 10.0  # HU; the noise removed is tens of HU
    assert not np.allclose(fast.hu, crop, atol=1.0)  # and it did denoise


def test_onnx_runtime_gives_the_torch_result(slice_hu):
    vol = nj.CTVolume(slice_hu)
    with mock.patch.dict(inference._ONNX, clear=True), \
            mock.patch.object(inference, "cpu_bf16_supported", return_value=False):
        seen = []
        fast = denoise(vol, model=DEFAULT_MODEL, dose=0.25, progress=seen.append)  # auto: ONNX Runtime
        assert seen and all(p.runtime == "onnxruntime" for p in seen)
        with mock.patch.object(inference, "select_device", return_value="cuda"):
            # asked for by name, ONNX Runtime takes the CPU even where "auto" would find a GPU
            named = denoise(vol, model=DEFAULT_MODEL, dose=0.25, runtime="onnxruntime")
        assert np.array_equal(named.hu, fast.hu)
        assert any(key[0] == DEFAULT_MODEL for key in inference._ONNX)  # it really ran there
        again = denoise(vol, model=DEFAULT_MODEL, dose=0.25, runtime="onnxruntime")
    plain = denoise(slice_hu, model=DEFAULT_MODEL, dose=0.25, runtime="torch")
    assert any("ONNX Runtime" in n for n in fast.notes)
    assert np.abs(fast.hu - plain).max() < inference.ONNX_TOLERANCE_HU
    assert np.array_equal(fast.hu, again.hu)  # deterministic
    assert not np.allclose(fast.hu, slice_hu, atol=1.0)  # and it did denoise


def test_failed_onnx_export_falls_back_to_torch(slice_hu):
    crop = np.ascontiguousarray(slice_hu[:, :96, :96])
    plain = denoise(crop, model=DEFAULT_MODEL, dose=0.25, runtime="torch")
    broken = mock.patch.object(torch.onnx, "export", side_effect=RuntimeError("unsupported operator"))
    no_bf16 = mock.patch.object(inference, "cpu_bf16_supported", return_value=False)
    with mock.patch.dict(inference._ONNX, clear=True), mock.patch.dict(inference._ONNX_FAILED, clear=True), \
            broken as export, no_bf16:
        out = denoise(nj.CTVolume(crop), model=DEFAULT_MODEL, dose=0.25)
        assert not inference._ONNX
        again = denoise(crop, model=DEFAULT_MODEL, dose=0.25)  # the failure is remembered, not retried
        assert export.call_count == 1 and np.array_equal(again, plain)
        with pytest.raises(RuntimeError, match="unsupported operator"):  # asked for, not given
            denoise(crop, model=DEFAULT_MODEL, dose=0.25, runtime="onnxruntime")
    assert any("ONNX Runtime failed" in n and "unsupported operator" in n for n in out.notes)
    assert np.array_equal(out.hu, plain)
    # an export that does not reproduce torch is never used
    with mock.patch.dict(inference._ONNX, clear=True), mock.patch.dict(inference._ONNX_FAILED, clear=True), \
            mock.patch.object(inference, "ONNX_TOLERANCE_HU", -1.0), no_bf16:
        out = denoise(nj.CTVolume(crop), model=DEFAULT_MODEL, dose=0.25)
        assert not inference._ONNX
    assert any("differs from torch" in n for n in out.notes)
    assert np.array_equal(out.hu, plain)


@pytest.mark.parametrize("array,dose,message", [
    (np.full((32, 32), np.nan), 0.25, "NaN"),
    (np.zeros((2, 2, 16, 16)), 0.25, "2D slice or a 3D"),
    (np.zeros((1, 1)), 0.25, "too small"),
    (np.zeros((16, 17)), 0.0, "dose must be"),
    (np.zeros((16, 17)), 1.5, "dose must be"),
    (np.zeros((16, 17)), float("nan"), "dose must be"),
])
def test_bad_input_gets_a_clear_error(array, dose, message):
    with pytest.raises(ValueError, match=message):
        denoise(array, model=DEFAULT_MODEL, dose=dose)


def test_unknown_model():
    with pytest.raises(KeyError, match="unknown model"):
        denoise(np.zeros((16, 16)), model="nope", dose=0.25)


def test_default_model_and_runtime_are_public(slice_hu):
    from napari_jointrecon.models.registry import DEFAULT_MODEL

    assert nj.select_runtime("auto", "cpu") in ("onnxruntime", "torch")
    assert nj.select_runtime("auto", "cpu", trained_bf16=True) in ("bf16", "onnxruntime", "torch")
    np.testing.assert_array_equal(nj.denoise(slice_hu, dose=0.25, device="cpu"),
                                  nj.denoise(slice_hu, model=DEFAULT_MODEL, dose=0.25, device="cpu"))
