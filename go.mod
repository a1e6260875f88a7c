module github.com/raftcdc/raftcdc

go 1.26.8
