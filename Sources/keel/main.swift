import Foundation
import KeelCore
import KeelKernels

BLASEnvironment.selectCoreType()
useSingleThreadedBLAS()
// A file-size limit (ulimit -f) then fails a write with an error that names it ("File too large"), instead of killing
// keel without a word and leaving its temporary files behind.
signal(SIGXFSZ, SIG_IGN)
Keel.main()
// `print` drops a failed write: a result that never reached standard output (a full disk) is an error, not success.
do { try StandardStreams.checkOutput() } catch { StandardStreams.error("Error: \(error)\n"); exit(1) }
