import Foundation

/// A thread started with pthread_create, which says whether it started. Foundation's `Thread.start()` does not: when
/// the system cannot make a thread (its memory or its thread limit exhausted), the thread never runs and whoever
/// waits for it waits forever — a checkpoint writer's caller, a loader's consumer.
public enum DetachedThread {
    /// Runs `body` on a new detached thread with a stack of `stackSize` bytes; false, with `body` not run, when the
    /// system could not start one.
    public static func start(stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) -> Bool {
        create(stackSize: stackSize, body) == 0
    }

    /// Starts `body` as `start` does, or stops the process with a message naming `purpose`: a thread the work cannot
    /// go on without is better missed loudly than waited for forever.
    public static func startOrExit(_ purpose: String, stackSize: Int = 1 << 20, _ body: @escaping @Sendable () -> Void) {
        let failure = create(stackSize: stackSize, body)
        guard failure != 0 else { return }
        StandardStreams.error("Error: cannot start a thread for \(purpose): \(String(cString: strerror(failure))) (the machine is out of memory or of threads)\n")
        exit(1)
    }

    /// Starts the thread; 0, or the error pthread returned.
    private static func create(stackSize: Int, _ body: @escaping @Sendable () -> Void) -> Int32 {
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        var failure = pthread_attr_setstacksize(&attributes, stackSize)
        if failure == 0 { failure = pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED)) }
        if failure == 0 {
            var thread = pthread_t()
            failure = pthread_create(&thread, &attributes, { context in
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, box)
        }
        if failure != 0 { Unmanaged<Body>.fromOpaque(box).release() }
        return failure
    }

    /// The closure a thread runs, passed through pthread_create's context pointer.
    private final class Body: @unchecked Sendable {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }
}
