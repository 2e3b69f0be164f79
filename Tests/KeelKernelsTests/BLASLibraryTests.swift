import KeelKernels
import XCTest

final class BLASLibraryTests: XCTestCase {
    /// Benchmark rows name the library and the kernels it chose: OpenBLAS's own description of itself.
    func testDescribesTheLibraryAndItsKernels() {
        let description = BLASLibrary.description
        XCTAssertTrue(description.hasPrefix("OpenBLAS"), description)
        XCTAssertTrue(description.contains("(kernels: "), description)
        XCTAssertFalse(description.contains("(kernels: unknown)"), description)
    }
}
