module github.com/alpinist/alpinist

go 1.26
