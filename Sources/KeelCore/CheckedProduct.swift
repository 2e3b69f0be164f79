/// The product of `factors` times `start`, or nil when it does not fit an Int: sizes read from a damaged or hostile
/// file's header must be an error naming the file, not an overflow trap.
public func checkedProduct(_ factors: [Int], times start: Int = 1) -> Int? {
    var product = start
    for factor in factors {
        let (next, overflow) = product.multipliedReportingOverflow(by: factor)
        guard !overflow else { return nil }
        product = next
    }
    return product
}
