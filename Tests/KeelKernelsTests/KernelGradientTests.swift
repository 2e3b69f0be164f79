import KeelCore
import KeelKernels
import XCTest

/// Every kernel's backward pass against finite differences of its forward pass.
final class KernelGradientTests: XCTestCase {
    var check = GradientCheck()

    func testLayerNorm() {
        let n = 6, c = 40
        let x = check.buffer(n * c, scale: 2, offset: 0.5), w = check.buffer(c, offset: 1), b = check.buffer(c)
        let upstream = check.buffer(n * c)
        let out = FloatBuffer(count: n * c), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
        func loss() -> Double {
            LayerNorm.forward(out.pointer, mean: mean.pointer, rstd: rstd.pointer, x.pointer, weight: w.pointer,
                              bias: b.pointer, rows: n, columns: c, epsilon: 1e-5)
            return GradientCheck.weightedSum(out, upstream)
        }
        _ = loss()
        let dx = FloatBuffer(count: n * c), dw = FloatBuffer(count: c), db = FloatBuffer(count: c)
        LayerNorm.backward(dx: dx.pointer, dWeight: dw.pointer, dBias: db.pointer, dOut: upstream.pointer, x: x.pointer,
                           weight: w.pointer, mean: mean.pointer, rstd: rstd.pointer, rows: n, columns: c)
        GradientCheck.assertMatches(dx, input: x, "layernorm dx", loss: loss)
        GradientCheck.assertMatches(dw, input: w, "layernorm dweight", loss: loss)
        GradientCheck.assertMatches(db, input: b, "layernorm dbias", loss: loss)
    }

    func testRMSNorm() {
        let n = 5, c = 36
        let x = check.buffer(n * c, scale: 1.5), w = check.buffer(c, offset: 1), upstream = check.buffer(n * c)
        let out = FloatBuffer(count: n * c), rstd = FloatBuffer(count: n)
        func loss() -> Double {
            RMSNorm.forward(out.pointer, rstd: rstd.pointer, x.pointer, weight: w.pointer, rows: n, columns: c, epsilon: 1e-6)
            return GradientCheck.weightedSum(out, upstream)
        }
        _ = loss()
        let dx = FloatBuffer(count: n * c), dw = FloatBuffer(count: c)
        RMSNorm.backward(dx: dx.pointer, dWeight: dw.pointer, dOut: upstream.pointer, x: x.pointer, weight: w.pointer,
                         rstd: rstd.pointer, rows: n, columns: c)
        GradientCheck.assertMatches(dx, input: x, "rmsnorm dx", loss: loss)
        GradientCheck.assertMatches(dw, input: w, "rmsnorm dweight", loss: loss)
    }

    func testGELU() {
        let count = 100
        let x = check.buffer(count, scale: 2), upstream = check.buffer(count), out = FloatBuffer(count: count)
        func loss() -> Double {
            GELU.forward(out.pointer, x.pointer, count: count)
            return GradientCheck.weightedSum(out, upstream)
        }
        let dx = FloatBuffer(count: count)
        GELU.backward(dx: dx.pointer, dOut: upstream.pointer, x: x.pointer, count: count)
        GradientCheck.assertMatches(dx, input: x, epsilon: 1e-3, "gelu dx", loss: loss)
    }

    func testGELUMatchesDefinition() {
        let count = 37
        let x = check.buffer(count, scale: 3), out = FloatBuffer(count: count)
        GELU.forward(out.pointer, x.pointer, count: count)
        for i in 0..<count {
            let v = Double(x.pointer[i])
            let expected = 0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
            XCTAssertEqual(Double(out.pointer[i]), expected, accuracy: 1e-6)
        }
    }

    /// The softmax inference's attention takes per row of scores: the definition in Double, within 1e-5 relative (the
    /// float difference x − max, up to 60 here, is rounded by up to 4e-6 of e^(x − max)) or 2e-38 (`exp16` gives
    /// e^-87 for anything smaller), on rows that end inside a vector, with scores close (every term counts in the
    /// sum) and far apart.
    func testSoftmaxMatchesDefinition() {
        for count in [1, 16, 37] {
            for scale: Float in [2, 30] {
                let x = check.buffer(count, scale: scale)
                let scores = (0..<count).map { Double(x.pointer[$0]) }
                let largest = scores.max()!, total = scores.reduce(0) { $0 + exp($1 - largest) }
                softmaxInPlace(x.pointer, count: count)
                for i in 0..<count {
                    let expected = exp(scores[i] - largest) / total
                    XCTAssertEqual(Double(x.pointer[i]), expected, accuracy: 1e-5 * expected + 2e-38,
                                   "row of \(count), scale \(scale), \(i)")
                }
            }
        }
    }

    func testSwiGLU() {
        let n = 4, f = 20
        let x = check.buffer(n * 2 * f, scale: 2), upstream = check.buffer(n * f), out = FloatBuffer(count: n * f)
        func loss() -> Double {
            SwiGLU.forward(out.pointer, x.pointer, rows: n, width: f)
            return GradientCheck.weightedSum(out, upstream)
        }
        let dx = FloatBuffer(count: n * 2 * f)
        SwiGLU.backward(dGateUp: dx.pointer, dOut: upstream.pointer, gateUp: x.pointer, rows: n, width: f)
        GradientCheck.assertMatches(dx, input: x, epsilon: 1e-3, "swiglu dx", loss: loss)
    }

    func testLinearBothLayouts() {
        for layout in [WeightLayout.inputMajor, .outputMajor] {
            let n = 5, i = 7, o = 9
            let shape = LinearShape(inFeatures: i, outFeatures: o, layout: layout)
            let x = check.buffer(n * i), w = check.buffer(i * o), b = check.buffer(o), upstream = check.buffer(n * o)
            let out = FloatBuffer(count: n * o)
            func loss() -> Double {
                shape.forward(out.pointer, x.pointer, weight: w.pointer, bias: b.pointer, rows: n)
                return GradientCheck.weightedSum(out, upstream)
            }
            _ = loss()
            // Check the forward against the definition too: the layout decides which index is the input.
            let r = 3, col = 4
            var expected = Double(b.pointer[col])
            for k in 0..<i {
                let weight = layout == .inputMajor ? w.pointer[k * o + col] : w.pointer[col * i + k]
                expected += Double(x.pointer[r * i + k]) * Double(weight)
            }
            XCTAssertEqual(Double(out.pointer[r * o + col]), expected, accuracy: 1e-5)
            let dx = FloatBuffer(count: n * i), dw = FloatBuffer(count: i * o), db = FloatBuffer(count: o)
            shape.backward(dInput: dx.pointer, accumulateInput: false, dWeight: dw.pointer, dBias: db.pointer,
                           dOut: upstream.pointer, input: x.pointer, weight: w.pointer, rows: n)
            GradientCheck.assertMatches(dx, input: x, "linear \(layout) dx", loss: loss)
            GradientCheck.assertMatches(dw, input: w, "linear \(layout) dweight", loss: loss)
            GradientCheck.assertMatches(db, input: b, "linear \(layout) dbias", loss: loss)
        }
    }

    func testCausalAttentionWithGroupedHeads() {
        // The last case spans more than one block of queries (blockRows = 64).
        for (batch, length, heads, kvHeads, d) in [(2, 5, 2, 2, 8), (2, 5, 4, 2, 8), (2, 5, 4, 1, 8), (1, 70, 2, 1, 4)] {
            let attention = CausalAttention(batch: batch, length: length, heads: heads, kvHeads: kvHeads, headDim: d)
            let n = batch * length
            let qkv = check.buffer(n * attention.rowStride), upstream = check.buffer(n * heads * d)
            let out = FloatBuffer(count: n * heads * d), lse = FloatBuffer(count: attention.statsCount)
            let scratch = FloatBuffer(count: attention.scratchCount)
            func loss() -> Double {
                attention.forward(out.pointer, lse: lse.pointer, qkv: qkv.pointer, scratch: scratch.pointer)
                return GradientCheck.weightedSum(out, upstream)
            }
            _ = loss()
            let dqkv = FloatBuffer(count: n * attention.rowStride)
            attention.backward(dQKV: dqkv.pointer, dOut: upstream.pointer, out: out.pointer, lse: lse.pointer,
                               qkv: qkv.pointer, scratch: scratch.pointer)
            GradientCheck.assertMatches(dqkv, input: qkv, samples: 400, "attention T=\(length) H=\(heads) KV=\(kvHeads) dqkv", loss: loss)
        }
    }

    /// With documents, the gradient is the masked attention's (a finite-difference check), across block edges.
    func testDocumentMaskedAttentionGradient() {
        let (batch, length, heads, kvHeads, d) = (2, 70, 4, 2, 4)
        let attention = CausalAttention(batch: batch, length: length, heads: heads, kvHeads: kvHeads, headDim: d)
        // Sequence 0: documents at 0, 3, 40 and 66 (one spans the block edge at 64); sequence 1: one document.
        let documents: [Int32] = (0..<length).map { $0 < 3 ? 0 : $0 < 40 ? 3 : $0 < 66 ? 40 : 66 } + Array(repeating: 0, count: length)
        let n = batch * length
        let qkv = check.buffer(n * attention.rowStride), upstream = check.buffer(n * heads * d)
        let out = FloatBuffer(count: n * heads * d), lse = FloatBuffer(count: attention.statsCount)
        let scratch = FloatBuffer(count: attention.scratchCount)
        func loss() -> Double {
            attention.forward(out.pointer, lse: lse.pointer, qkv: qkv.pointer, scratch: scratch.pointer, documents: documents)
            return GradientCheck.weightedSum(out, upstream)
        }
        _ = loss()
        let dqkv = FloatBuffer(count: n * attention.rowStride)
        attention.backward(dQKV: dqkv.pointer, dOut: upstream.pointer, out: out.pointer, lse: lse.pointer,
                           qkv: qkv.pointer, scratch: scratch.pointer, documents: documents)
        GradientCheck.assertMatches(dqkv, input: qkv, samples: 400, "document-masked attention dqkv", loss: loss)
    }

    /// Documents packed into one sequence attend exactly as each alone: the same outputs and gradients (up to the
    /// rounding of products of other sizes) as attention over each document as its own sequence.
    func testPackedDocumentsAttendAsIfAlone() {
        let (heads, kvHeads, d) = (2, 1, 8)
        let lengths = [5, 61, 9, 1], total = lengths.reduce(0, +)
        let packed = CausalAttention(batch: 1, length: total, heads: heads, kvHeads: kvHeads, headDim: d)
        let stride = packed.rowStride, width = heads * d
        let qkv = check.buffer(total * stride), upstream = check.buffer(total * width)
        var documents: [Int32] = []
        for (index, length) in lengths.enumerated() {
            documents += Array(repeating: Int32(lengths[..<index].reduce(0, +)), count: length)
        }
        let out = FloatBuffer(count: total * width), lse = FloatBuffer(count: packed.statsCount)
        let dqkv = FloatBuffer(count: total * stride)
        let scratch = FloatBuffer(count: packed.scratchCount)
        packed.forward(out.pointer, lse: lse.pointer, qkv: qkv.pointer, scratch: scratch.pointer, documents: documents)
        packed.backward(dQKV: dqkv.pointer, dOut: upstream.pointer, out: out.pointer, lse: lse.pointer, qkv: qkv.pointer,
                        scratch: scratch.pointer, documents: documents)
        var offset = 0
        for length in lengths {
            let alone = CausalAttention(batch: 1, length: length, heads: heads, kvHeads: kvHeads, headDim: d)
            let o = FloatBuffer(count: length * width), l = FloatBuffer(count: alone.statsCount)
            let g = FloatBuffer(count: length * stride), s = FloatBuffer(count: alone.scratchCount)
            alone.forward(o.pointer, lse: l.pointer, qkv: qkv.pointer + offset * stride, scratch: s.pointer)
            alone.backward(dQKV: g.pointer, dOut: upstream.pointer + offset * width, out: o.pointer, lse: l.pointer,
                           qkv: qkv.pointer + offset * stride, scratch: s.pointer)
            for i in 0..<(length * width) {
                XCTAssertEqual(out.pointer[offset * width + i], o.pointer[i], accuracy: 1e-5, "output of a document at \(offset)")
            }
            for i in 0..<(length * stride) {
                XCTAssertEqual(dqkv.pointer[offset * stride + i], g.pointer[i], accuracy: 1e-5, "gradient of a document at \(offset)")
            }
            offset += length
        }
    }

    func testAttentionIsCausal() {
        // Changing the last token's key and value must not change any earlier output (T spans two blocks).
        let t = 80
        let attention = CausalAttention(batch: 1, length: t, heads: 2, kvHeads: 1, headDim: 4)
        let qkv = check.buffer(t * attention.rowStride)
        let out = FloatBuffer(count: t * 8), lse = FloatBuffer(count: attention.statsCount)
        let scratch = FloatBuffer(count: attention.scratchCount)
        attention.forward(out.pointer, lse: lse.pointer, qkv: qkv.pointer, scratch: scratch.pointer)
        let before = out.toArray()
        for k in 8..<attention.rowStride { qkv.pointer[(t - 1) * attention.rowStride + k] += 1 }
        attention.forward(out.pointer, lse: lse.pointer, qkv: qkv.pointer, scratch: scratch.pointer)
        XCTAssertEqual(Array(out.toArray()[0..<((t - 1) * 8)]), Array(before[0..<((t - 1) * 8)]))
        XCTAssertNotEqual(Array(out.toArray()[((t - 1) * 8)...]), Array(before[((t - 1) * 8)...]))
    }

    func testRotaryEmbedding() {
        let rope = RotaryEmbedding(headDim: 8, maxLength: 6, theta: 10_000)
        let stride = 24, rows = 2 * 6
        let x = check.buffer(rows * stride), upstream = check.buffer(rows * stride)
        let work = FloatBuffer(count: rows * stride)
        func loss() -> Double {
            work.pointer.update(from: x.pointer, count: x.count)
            rope.apply(work.pointer, batch: 2, length: 6, stride: stride, heads: 2)
            return GradientCheck.weightedSum(work, upstream)
        }
        _ = loss()
        // Heads past the first two are untouched.
        XCTAssertEqual(work.pointer[stride + 20], x.pointer[stride + 20])
        let dx = FloatBuffer(count: rows * stride)
        dx.pointer.update(from: upstream.pointer, count: upstream.count)
        rope.apply(dx.pointer, batch: 2, length: 6, stride: stride, heads: 2, inverse: true)
        GradientCheck.assertMatches(dx, input: x, samples: 300, "rope dx", loss: loss)
        // Position 0 is the identity; position 1 rotates pair (0, 4) by exactly 1 radian.
        XCTAssertEqual(work.pointer[0], x.pointer[0])
        let a = Double(x.pointer[stride]), b = Double(x.pointer[stride + 4])
        XCTAssertEqual(Double(work.pointer[stride]), a * cos(1) - b * sin(1), accuracy: 1e-5)
    }

    /// At temperature 1 and at a sampler's temperature T (the loss of softmax(logits / T), its gradient in the logits).
    func testCrossEntropy() {
        let n = 4, v = 37
        let logits = check.buffer(n * v, scale: 3)
        // Row 2 is not trained on: no loss, no gradient.
        let targets: [Int32] = [0, 36, CrossEntropy.ignored, 17]
        let losses = FloatBuffer(count: n), work = FloatBuffer(count: n * v)
        for temperature: Float in [1, 0.6] {
            func loss() -> Double {
                work.pointer.update(from: logits.pointer, count: logits.count)
                targets.withUnsafeBufferPointer { t in
                    CrossEntropy.forward(losses: losses.pointer, logits: work.pointer, targets: t.baseAddress!, rows: n,
                                         vocab: v, gradientScale: nil, temperature: temperature)
                }
                return (0..<n).reduce(0.0) { $0 + Double(losses.pointer[$1]) }
            }
            _ = loss()
            // Loss against the definition.
            for r in 0..<n where targets[r] != CrossEntropy.ignored {
                let row = (0..<v).map { Double(logits.pointer[r * v + $0]) / Double(temperature) }
                let lse = log(row.map { exp($0) }.reduce(0, +))
                XCTAssertEqual(Double(losses.pointer[r]), lse - row[Int(targets[r])], accuracy: 1e-5, "T \(temperature)")
            }
            XCTAssertEqual(losses.pointer[2], 0)
            let gradient = FloatBuffer(count: n * v)
            gradient.pointer.update(from: logits.pointer, count: logits.count)
            targets.withUnsafeBufferPointer { t in
                CrossEntropy.forward(losses: losses.pointer, logits: gradient.pointer, targets: t.baseAddress!, rows: n,
                                     vocab: v, gradientScale: 1, temperature: temperature)
            }
            GradientCheck.assertMatches(gradient, input: logits, epsilon: 1e-3, samples: 200, "cross-entropy dlogits T \(temperature)",
                                        loss: loss)
            XCTAssertTrue((0..<v).allSatisfy { gradient.pointer[2 * v + $0] == 0 }, "an ignored row has no gradient")
        }
    }

    func testEmbeddingWithRepeatedTokens() {
        let c = 8, length = 3, rows = 6
        let table = check.buffer(5 * c), positions = check.buffer(length * c), upstream = check.buffer(rows * c)
        let tokens: [Int32] = [1, 4, 1, 1, 0, 4]
        let out = FloatBuffer(count: rows * c)
        func loss() -> Double {
            tokens.withUnsafeBufferPointer { t in
                Embedding.forward(out.pointer, tokens: t.baseAddress!, table: table.pointer, positions: positions.pointer,
                                  rows: rows, length: length, columns: c)
            }
            return GradientCheck.weightedSum(out, upstream)
        }
        let dTable = FloatBuffer(count: 5 * c), dPositions = FloatBuffer(count: length * c)
        tokens.withUnsafeBufferPointer { t in
            Embedding.backward(dTable: dTable.pointer, dPositions: dPositions.pointer, dOut: upstream.pointer,
                               tokens: t.baseAddress!, rows: rows, length: length, columns: c)
        }
        GradientCheck.assertMatches(dTable, input: table, "embedding dtable", loss: loss)
        GradientCheck.assertMatches(dPositions, input: positions, "embedding dpositions", loss: loss)
    }
}
