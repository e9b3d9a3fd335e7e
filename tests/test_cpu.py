"""Which CPUs compute bf16 in hardware, read from /proc/cpuinfo's flags."""

from __future__ import annotations

from lightly_train._cpu import bf16_flag, bf16_hint, native_bf16

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: {model}
flags\t\t: fpu vme de pse tsc msr pae sse sse2 avx2 avx512f avx512bw {extra}
bugs\t\t: sysret_ss_attrs spectre_v1
"""


def test_bf16_flag_is_read_from_the_flags_line() -> None:
    zen4 = CPUINFO.format(vendor="AuthenticAMD", model="AMD EPYC 9R14",
                          extra="avx512_vnni avx512_bf16")  # fmt: skip
    spr = CPUINFO.format(vendor="GenuineIntel", model="Xeon Platinum 8488C",
                         extra="avx512_bf16 amx_bf16 amx_tile amx_int8")  # fmt: skip
    skylake = CPUINFO.format(vendor="GenuineIntel", model="Xeon Gold 6148",
                             extra="avx512_vnni")  # fmt: skip
    assert bf16_flag(zen4) == "avx512_bf16"
    assert bf16_flag(spr) == "amx_bf16"  # AMX first: the faster one
    assert bf16_flag(skylake) == ""  # AVX-512 without bf16 instructions: no claim
    # Only the flags line counts, not a model name that mentions a flag.
    assert bf16_flag(skylake.replace("Xeon Gold 6148", "amx_bf16 box")) == ""
    assert bf16_flag("") == ""


def test_the_hint_is_for_float32_on_a_cpu_with_bf16_only() -> None:
    assert bf16_hint("bf16-mixed", "embeds") == ""
    hint = bf16_hint("32-true", "trains")
    if native_bf16():
        assert hint.startswith(f"This CPU computes bf16 in hardware ({native_bf16()})")
        assert "precision=bf16-mixed" in hint and "trains" in hint
    else:
        assert hint == ""
