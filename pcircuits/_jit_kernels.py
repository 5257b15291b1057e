"""The compiled kernels behind :mod:`pcircuits.jit` (imported on first use: it imports Numba)."""
import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from .jit import kernel


@intrinsic
def _bits_to_f32(typingctx, value):
    """The float32 whose bits are the int32 ``value``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


@intrinsic
def _f32_to_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))
    return types.int32(types.float32), codegen


@intrinsic
def _bits_to_f64(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


@intrinsic
def _f64_to_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


f32 = np.float32
_E32_LOG2E, _E32_SHIFT = f32(1.4426950408889634), f32(12582912.0)       # 1.5 * 2**23 rounds to integers
_E32_LN2_HI, _E32_LN2_LO = f32(0.693145751953125), f32(1.428606765330187e-06)
_E32_LO, _E32_HI = f32(-104.0), f32(89.0)                                # clamp before the reduction
_E32_ZERO_BELOW, _E32_INF_ABOVE = f32(-103.97208), f32(88.72284)
_E32_C = (f32(1.9875691500e-4), f32(1.3981999507e-3), f32(8.3334519073e-3), f32(4.1665795894e-2),
          f32(1.6666665459e-1), f32(5.0000001201e-1))


@kernel(inline="always")
def exp32(x):
    """``exp(x)`` for a float32 ``x`` (Cephes' ``expf`` polynomial, exponent from bits)."""
    clamped = min(max(x, _E32_LO), _E32_HI)
    n = (clamped * _E32_LOG2E + _E32_SHIFT) - _E32_SHIFT
    r = clamped - n * _E32_LN2_HI - n * _E32_LN2_LO
    p = _E32_C[0]
    p = p * r + _E32_C[1]
    p = p * r + _E32_C[2]
    p = p * r + _E32_C[3]
    p = p * r + _E32_C[4]
    p = p * r + _E32_C[5]
    p = p * r * r + r + f32(1.0)
    k = np.int32(n)
    half = k >> 1
    value = p * _bits_to_f32((half + 127) << 23) * _bits_to_f32((k - half + 127) << 23)
    value = f32(0.0) if x < _E32_ZERO_BELOW else value
    value = f32(np.inf) if x > _E32_INF_ABOVE else value
    return x if x != x else value


_E64_LOG2E, _E64_SHIFT = 1.4426950408889634, 6755399441055744.0          # 1.5 * 2**52
_E64_LN2_HI, _E64_LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_E64_ZERO_BELOW, _E64_INF_ABOVE = -745.1332191019412, 709.782712893384
_E64_C = tuple(1.0 / float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(13, 1, -1))


@kernel(inline="always")
def exp64(x):
    """``exp(x)`` for a float64 ``x``: Taylor polynomial of degree 13 on ``|r| <= ln 2 / 2``."""
    clamped = min(max(x, -746.0), 710.0)
    n = (clamped * _E64_LOG2E + _E64_SHIFT) - _E64_SHIFT
    r = clamped - n * _E64_LN2_HI - n * _E64_LN2_LO
    p = _E64_C[0]
    for c in _E64_C[1:]:
        p = p * r + c
    p = (p * r + 1.0) * r + 1.0
    k = np.int64(n)
    half = k >> 1
    value = p * _bits_to_f64((half + 1023) << 52) * _bits_to_f64((k - half + 1023) << 52)
    value = 0.0 if x < _E64_ZERO_BELOW else value
    value = np.inf if x > _E64_INF_ABOVE else value
    return x if x != x else value


# fdlibm's log: x = 2^k m with m in [sqrt(1/2), sqrt(2)), log m = f - f^2/2 + s (f^2/2 + R(s^2))
_L64_LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
           2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
           1.479819860511658591e-01)
_L_SQRT2 = 1.4142135623730951


@kernel(inline="always")
def log64(x):
    """``log(x)`` for a float64 ``x`` (fdlibm's ``log`` reduction and polynomial)."""
    subnormal = x < 2.2250738585072014e-308
    scaled = x * 18014398509481984.0 if subnormal else x            # 2**54
    bits = _f64_to_bits(scaled)
    k = ((bits >> 52) & 0x7FF) - 1023 - (54 if subnormal else 0)
    m = _bits_to_f64((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    upper = m > _L_SQRT2
    m = m * 0.5 if upper else m
    k = k + 1 if upper else k
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_L64_LG[1] + w * (_L64_LG[3] + w * _L64_LG[5]))
    t2 = z * (_L64_LG[0] + w * (_L64_LG[2] + w * (_L64_LG[4] + w * _L64_LG[6])))
    half_f2 = 0.5 * f * f
    kf = np.float64(k)
    value = kf * _E64_LN2_HI - ((half_f2 - (s * (half_f2 + t1 + t2) + kf * _E64_LN2_LO)) - f)
    value = -np.inf if x == 0.0 else value
    value = np.nan if x < 0.0 else value
    value = x if x == np.inf else value
    return x if x != x else value


_L32_LG = (f32(6.6666662693e-01), f32(4.0000972152e-01), f32(2.8498786688e-01), f32(2.4279078841e-01))
_L32_SQRT2 = f32(1.4142135)
_L32_LN2_HI, _L32_LN2_LO = f32(6.9313812256e-01), f32(9.0580006145e-06)


@kernel(inline="always")
def log32(x):
    """``log(x)`` for a float32 ``x`` (the float32 form of :func:`log64`)."""
    subnormal = x < f32(1.17549435e-38)
    scaled = x * f32(33554432.0) if subnormal else x                 # 2**25
    bits = _f32_to_bits(scaled)
    k = ((bits >> 23) & 0xFF) - 127 - (25 if subnormal else 0)
    m = _bits_to_f32((bits & 0x007FFFFF) | 0x3F800000)
    upper = m > _L32_SQRT2
    m = m * f32(0.5) if upper else m
    k = k + 1 if upper else k
    f = m - f32(1.0)
    s = f / (f32(2.0) + f)
    z = s * s
    w = z * z
    t1 = w * (_L32_LG[1] + w * _L32_LG[3])
    t2 = z * (_L32_LG[0] + w * _L32_LG[2])
    half_f2 = f32(0.5) * f * f
    kf = f32(k)
    value = kf * _L32_LN2_HI - ((half_f2 - (s * (half_f2 + t1 + t2) + kf * _L32_LN2_LO)) - f)
    value = f32(-np.inf) if x == f32(0.0) else value
    value = f32(np.nan) if x < f32(0.0) else value
    value = x if x == f32(np.inf) else value
    return x if x != x else value


def exp_of(x):
    """``exp`` of a float32 or float64 scalar in compiled code: :func:`exp32` or :func:`exp64` by
    the argument's type, for kernels written once for both dtypes."""
    return np.exp(x)


def log_of(x):
    """``log`` of a float32 or float64 scalar in compiled code (:func:`log32` or :func:`log64`)."""
    return np.log(x)


@overload(exp_of, inline="always")
def _exp_of(x):
    return (lambda x: exp32(x)) if x == types.float32 else (lambda x: exp64(x))


@overload(log_of, inline="always")
def _log_of(x):
    return (lambda x: log32(x)) if x == types.float32 else (lambda x: log64(x))


@kernel(inline="always")
def _flat_pair(source, target):
    """``source`` and ``target`` as flat arrays; ``source`` copied when the two overlap without
    being the same array (as NumPy's ufuncs do). ``target`` may be ``source`` itself: the loops
    then read and write one array, which the compiler vectorizes (with two arguments that alias,
    its overlap check fails and it runs the scalar loop, five times slower)."""
    s = source.reshape(source.size)
    t = target.reshape(target.size)
    start, end = s.ctypes.data, s.ctypes.data + s.nbytes
    if start != t.ctypes.data and start < t.ctypes.data + t.nbytes and t.ctypes.data < end:
        s = s.copy()
    return s, t


@kernel
def _exp32_loop(source, target):
    """``target[...] = exp(source)`` for C-contiguous arrays of one shape (the same for the other
    loops). One function per scalar rather than one factory: Numba's disk cache keys compiled code
    by the function's name, line and argument types, so loops made by one factory for the same
    dtype would overwrite each other's cached code and compile again in every process."""
    s, t = _flat_pair(source, target)
    if s.ctypes.data == t.ctypes.data:
        for i in range(t.size):
            t[i] = exp32(t[i])
    else:
        for i in range(s.size):
            t[i] = exp32(s[i])


@kernel
def _exp64_loop(source, target):
    s, t = _flat_pair(source, target)
    if s.ctypes.data == t.ctypes.data:
        for i in range(t.size):
            t[i] = exp64(t[i])
    else:
        for i in range(s.size):
            t[i] = exp64(s[i])


@kernel
def _log32_loop(source, target):
    s, t = _flat_pair(source, target)
    if s.ctypes.data == t.ctypes.data:
        for i in range(t.size):
            t[i] = log32(t[i])
    else:
        for i in range(s.size):
            t[i] = log32(s[i])


@kernel
def _log64_loop(source, target):
    s, t = _flat_pair(source, target)
    if s.ctypes.data == t.ctypes.data:
        for i in range(t.size):
            t[i] = log64(t[i])
    else:
        for i in range(s.size):
            t[i] = log64(s[i])


LOOPS = {("exp", np.dtype(np.float32)): _exp32_loop, ("exp", np.dtype(np.float64)): _exp64_loop,
          ("log", np.dtype(np.float32)): _log32_loop, ("log", np.dtype(np.float64)): _log64_loop}
