import XCTest
import KeelCore

final class ProcessPlacementTests: XCTestCase {
    func testEachLauncherIsRecognised() throws {
        XCTAssertEqual(try ProcessPlacement.discover([:]), .single)
        XCTAssertEqual(try ProcessPlacement.discover([
            "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
        ]), ProcessPlacement(rank: 3, worldSize: 8, localRank: 1, localSize: 2, launcher: "OpenMPI"))
        XCTAssertEqual(try ProcessPlacement.discover([
            "SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x4)", "SLURM_STEP_ID": "0",
        ]), ProcessPlacement(rank: 5, worldSize: 16, localRank: 1, localSize: 4, launcher: "Slurm"))
        XCTAssertEqual(try ProcessPlacement.discover(["RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"]),
                       ProcessPlacement(rank: 1, worldSize: 2, localRank: 1, localSize: nil, launcher: "torchrun"))
    }

    /// Slurm's per-node task list, runs written "N(xK)", read at this node: nodes of 2, 2, 2 and 1 tasks.
    func testSlurmTasksOnThisNodeComeFromTheStepList() throws {
        let base = ["SLURM_PROCID": "6", "SLURM_NTASKS": "7", "SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "2", "SLURM_STEP_ID": "3"]
        for (node, expected) in [("0", 2), ("2", 2), ("3", 1)] {
            let environment = base.merging(["SLURM_STEP_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": node]) { $1 }
            XCTAssertEqual(try ProcessPlacement.discover(environment).localSize, expected, "node \(node)")
        }
        // Without the list (or with one it cannot read), the requested count per node, as before.
        XCTAssertEqual(try ProcessPlacement.discover(base).localSize, 2)
        XCTAssertEqual(try ProcessPlacement.discover(base.merging(["SLURM_STEP_TASKS_PER_NODE": "2(y3)", "SLURM_NODEID": "0"]) { $1 }).localSize, 2)
    }

    /// A batch script (`sbatch -n 4`) sees what this local Slurm gave it — SLURM_PROCID 0, SLURM_NTASKS 4, no step — and
    /// is one process, not rank 0 of 4 (a single `keel train` in it was refused: "MPI sees 1").
    func testABatchScriptIsOneProcess() throws {
        let batch = ["SLURM_JOB_ID": "86", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "4", "SLURM_PROCID": "0",
                     "SLURM_TASKS_PER_NODE": "4"]
        XCTAssertEqual(try ProcessPlacement.discover(batch), .single)
        XCTAssertEqual(try ProcessPlacement.discover(batch.merging(["SLURM_STEP_ID": "0"]) { $1 }).worldSize, 4)
    }

    /// Processes of a launcher Keel does not read would each train alone into one run directory: refused, named.
    func testOtherLaunchersAreRefused() {
        for (environment, fragment) in [(["PMI_RANK": "1", "PMI_SIZE": "4"], "PMI_SIZE=4"), (["FLUX_JOB_SIZE": "2"], "FLUX_JOB_SIZE=2")] {
            XCTAssertThrowsError(try ProcessPlacement.discover(environment)) { XCTAssertTrue("\($0)".contains(fragment), "\($0)") }
        }
        XCTAssertEqual(try ProcessPlacement.discover(["PMI_RANK": "0", "PMI_SIZE": "1"]), .single)
    }

    func testOpenMPITakesPrecedenceOverSlurm() throws {
        // srun --mpi=pmix inside an allocation sets both; mpirun's numbering is the one MPI uses.
        let placement = try ProcessPlacement.discover([
            "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2", "SLURM_PROCID": "7", "SLURM_NTASKS": "9",
        ])
        XCTAssertEqual(placement.launcher, "OpenMPI")
        XCTAssertEqual(placement.worldSize, 2)
    }

    func testMalformedVariablesAreNamed() {
        for (environment, fragment) in [
            (["RANK": "one", "WORLD_SIZE": "2"], "RANK=one is not a non-negative integer"),
            (["RANK": "2", "WORLD_SIZE": "2"], "RANK=2 is not below WORLD_SIZE=2"),
            (["SLURM_PROCID": "0", "SLURM_STEP_ID": "0"], "SLURM_NTASKS is not set"),
            (["OMPI_COMM_WORLD_RANK": "-1", "OMPI_COMM_WORLD_SIZE": "2"], "OMPI_COMM_WORLD_RANK=-1"),
        ] {
            XCTAssertThrowsError(try ProcessPlacement.discover(environment)) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)")
            }
        }
    }
}
