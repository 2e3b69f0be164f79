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
            "SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4(x4)",
        ]), ProcessPlacement(rank: 5, worldSize: 16, localRank: 1, localSize: 4, launcher: "Slurm"))
        XCTAssertEqual(try ProcessPlacement.discover(["RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"]),
                       ProcessPlacement(rank: 1, worldSize: 2, localRank: 1, localSize: nil, launcher: "torchrun"))
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
            (["SLURM_PROCID": "0"], "SLURM_NTASKS is not set"),
            (["OMPI_COMM_WORLD_RANK": "-1", "OMPI_COMM_WORLD_SIZE": "2"], "OMPI_COMM_WORLD_RANK=-1"),
        ] {
            XCTAssertThrowsError(try ProcessPlacement.discover(environment)) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error)")
            }
        }
    }
}
