/// Portable matmul (Swift SIMD16; any CPU). Per element: one SIMD16 chain `acc += x·w`
/// (multiply then add, unfused, so the bits do not depend on the compiler contracting) over
/// k in steps of 16 with a zero-padded last step, then the fixed tree 16 → 8 → 4 → 2 → 1.
/// Computes `out[m, n]` for every `m < rows` and `n` in `columns` (rows of `out` `ldo` apart).
func matmulPortable(_ x: UnsafePointer<Float>, rows: Int, weight: WeightMatrix,
                    columns: Range<Int>, out: UnsafeMutablePointer<Float>, ldo: Int) {
    let k = weight.cols, n = ldo
    var j = columns.lowerBound
    // Four weight rows at a time: each loaded weight vector serves four chains.
    while j + 4 <= columns.upperBound {
        for m in 0..<rows {
            let xr = x + m * k
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
            var i = 0
            while i < k {
                let xv = load16(xr, i, k)
                a0 += xv * weightVector(weight, j, i)
                a1 += xv * weightVector(weight, j + 1, i)
                a2 += xv * weightVector(weight, j + 2, i)
                a3 += xv * weightVector(weight, j + 3, i)
                i += 16
            }
            let o = out + m * n + j
            o[0] = reduce16(a0); o[1] = reduce16(a1); o[2] = reduce16(a2); o[3] = reduce16(a3)
        }
        j += 4
    }
    while j < columns.upperBound {
        for m in 0..<rows {
            let xr = x + m * k
            var a0 = SIMD16<Float>()
            var i = 0
            while i < k {
                a0 += load16(xr, i, k) * weightVector(weight, j, i)
                i += 16
            }
            out[m * n + j] = reduce16(a0)
        }
        j += 1
    }
}

@inline(__always)
private func reduce16(_ v: SIMD16<Float>) -> Float {
    let v8 = v.lowHalf + v.highHalf
    let v4 = v8.lowHalf + v8.highHalf
    let v2 = v4.lowHalf + v4.highHalf
    return v2[0] + v2[1]
}

/// x[i..<i+16], zero past `k`.
@inline(__always)
private func load16(_ x: UnsafePointer<Float>, _ i: Int, _ k: Int) -> SIMD16<Float> {
    if i + 16 <= k { return UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self) }
    var v = SIMD16<Float>()
    for t in 0..<(k - i) { v[t] = x[i + t] }
    return v
}

/// W[r, i..<i+16] widened to Float, zero past the row's end.
@inline(__always)
private func weightVector(_ w: WeightMatrix, _ r: Int, _ i: Int) -> SIMD16<Float> {
    let k = w.cols
    if i + 16 > k {
        var v = SIMD16<Float>()
        for t in 0..<(k - i) { v[t] = w.element(r, i + t) }
        return v
    }
    let offset = (r * k + i) * w.dtype.byteCount
    switch w.dtype {
    case .f32:
        return w.base.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self)
    case .bf16:
        let h = w.base.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt16>.self)
        return unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16, to: SIMD16<Float>.self)
    case .f16:
        let h = w.base.loadUnaligned(fromByteOffset: offset, as: SIMD16<UInt16>.self)
        var v = SIMD16<Float>()
        for t in 0..<16 { v[t] = f16ToFloat(h[t]) }
        return v
    }
}
