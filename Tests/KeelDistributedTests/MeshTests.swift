import XCTest
@testable import KeelDistributed
