module github.com/mitchellh/go-homedir
