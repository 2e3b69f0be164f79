BLASEnvironment.selectCoreType()
Keel.main()
