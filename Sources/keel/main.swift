import KeelKernels

BLASEnvironment.selectCoreType()
useSingleThreadedBLAS()
Keel.main()
