import KeelInference
import XCTest

/// The stop-string search finds what searching the whole text again after every piece finds: the earliest stop
/// string that ends in the new piece, and the longest tail that a stop string starts with.
final class StopStringSearchTests: XCTestCase {
    /// Where the earliest of `stops` that ends after `searched` bytes of `text` starts (a plain search of every
    /// position), and the longest proper prefix of a stop string that `text` ends with.
    private func reference(_ stops: [[UInt8]], _ text: [UInt8], searched: Int) -> (cut: Int?, pending: Int) {
        var cut: Int?
        for stop in stops where stop.count <= text.count {
            for start in max(0, searched - stop.count + 1)...(text.count - stop.count)
                where Array(text[start..<(start + stop.count)]) == stop {
                cut = min(cut ?? start, start)
                break
            }
        }
        let pending = stops.map { stop in
            (0..<stop.count).last { $0 <= text.count && Array(text.suffix($0)) == Array(stop.prefix($0)) } ?? 0
        }.max() ?? 0
        return (cut, pending)
    }

    func testItFindsWhatAFullSearchFinds() {
        // A fixed sequence: the same cases on every run.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var found = 0
        for _ in 0..<2000 {
            // Two letters make overlapping, self-similar stop strings ("abab", "aab") that a naive automaton misses.
            let stops = (0..<(1 + next(3))).map { _ in (0..<(1 + next(8))).map { _ in UInt8(ascii: "a") + UInt8(next(2)) } }
            var search = StopStringSearch(stops)
            var text: [UInt8] = []
            while text.count < 40 {
                let piece = (0..<(1 + next(4))).map { _ in UInt8(ascii: "a") + UInt8(next(2)) }
                let searched = text.count
                text += piece
                let expected = reference(stops, text, searched: searched)
                let cut = search.read(piece)
                XCTAssertEqual(cut, expected.cut, "stops \(stops.map { String(decoding: $0, as: UTF8.self) }), text \(String(decoding: text, as: UTF8.self))")
                if cut != nil {
                    found += 1
                    break
                }
                XCTAssertEqual(search.pending, expected.pending, "stops \(stops), text \(text)")
            }
        }
        XCTAssertGreaterThan(found, 1000, "most cases end in a stop string")
    }

    /// The case a search by the old rule got right and a careless automaton does not: the earliest start wins, not
    /// the first end ("c" ends first, "abcd" starts first, both in one piece).
    func testTheEarliestStartWinsWithinAPiece() {
        var search = StopStringSearch([Array("c".utf8), Array("abcd".utf8)])
        XCTAssertNil(search.read(Array("xa".utf8)))
        XCTAssertEqual(search.pending, 1)
        XCTAssertEqual(search.read(Array("bcd".utf8)), 1)
    }
}
